"""`benchmarks/RESULTS.md` sections (`benchmarks.support.results`): each benchmark rewrites only its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.support.results import HEADER, command, publish, update_section

BEFORE = """# Benchmark results

Intro.

## Soak (`python -m benchmarks.soak`)

old soak figures

## Server capacity

capacity figures
"""


def test_a_section_in_the_middle_is_replaced_and_the_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(BEFORE)
    update_section("## Soak (`python -m benchmarks.soak`)", "## Soak (`python -m benchmarks.soak`)\n\nnew\n", path)
    assert path.read_text() == (
        "# Benchmark results\n\nIntro.\n\n## Soak (`python -m benchmarks.soak`)\n\nnew\n\n"
        "## Server capacity\n\ncapacity figures\n"
    )


def test_the_last_section_is_replaced_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(BEFORE)
    update_section("## Server capacity", "## Server capacity\n\nfaster\n", path)
    assert path.read_text().endswith("old soak figures\n\n## Server capacity\n\nfaster\n")
    assert path.read_text().count("## ") == 2


def test_a_new_section_is_appended_and_a_missing_file_starts_with_the_header(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    update_section("## Validity", "## Validity\n\ncovered\n", path)
    assert path.read_text() == HEADER + "\n## Validity\n\ncovered\n"
    update_section("## Shape", "## Shape\n\nPoisson\n", path)
    assert path.read_text() == HEADER + "\n## Validity\n\ncovered\n\n## Shape\n\nPoisson\n"


def test_the_command_a_result_records() -> None:
    assert command("benchmarks.soak", ["--quick", "--json", "/tmp/a b.json"]) == (
        "python -m benchmarks.soak --quick --json '/tmp/a b.json'"
    )
    assert command("benchmarks.soak", []) == "python -m benchmarks.soak"


def test_a_published_result_is_printed_and_with_update_becomes_its_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(BEFORE)
    monkeypatch.setattr("sys.argv", ["x", "--rounds", "2"])
    publish("## Server capacity", "benchmarks.x", "2026-01-01 00:00 UTC", "a machine", "| a |", update=False, path=path)
    assert capsys.readouterr().out == "\n| a |\n" and path.read_text() == BEFORE
    publish("## Server capacity", "benchmarks.x", "2026-01-01 00:00 UTC", "a machine", "| a |", update=True,
            setup="Both servers alike.", path=path)  # fmt: skip
    assert path.read_text().endswith(
        "## Server capacity\n\nDate: 2026-01-01 00:00 UTC. Machine: a machine. Command: "
        "`python -m benchmarks.x --rounds 2`. Both servers alike.\n\n| a |\n"
    )
