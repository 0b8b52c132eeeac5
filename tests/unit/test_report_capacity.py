"""The report of a capacity search and of a repeated run: the Capacity section (the answer, the curve, every trial in
order), each step's measurement window and SATURATED mark, and each figure across runs."""

from __future__ import annotations

import re
from pathlib import Path

from harness.analysis.capacity import versus
from harness.analysis.summary import read_summary
from harness.report import capacity as shown
from harness.report.build import build
from tests.unit.built_runs import write_dir
from tests.unit.built_searches import flat_until, search_config, search_run
from tests.unit.test_repeats import repeated_run

LOADS = [4.0, 8.0, 16.0, 11.31, 13.45, 12.33, 11.81]


def test_a_search_report_shows_its_answer_its_curve_and_every_trial(tmp_path: Path) -> None:
    def ttft(load: float, i: int) -> float:  # above 12 req/s a queue that grows
        return 100.0 + 20.0 * i if load > 12 else 100.0

    run = search_run(LOADS, ttft, search_config({"ttft_p90_ms": 500}), n=150)
    directory = write_dir(tmp_path / "search", run)
    written = build([directory])
    page = written.html.read_text()
    note = written.markdown.read_text()
    assert "<h2>Capacity</h2>" in page and 'alt="capacity search"' in page
    assert "capacity 11.81 req/s: 11.81 met the objectives, 12.33 did not. Interval [11.81, 12.33] req/s" in page
    assert "<h2>Measurement windows and saturation</h2>" in page
    assert "capacity 11.81 req/s" in note.splitlines()[2]
    rows = [line for line in note.splitlines() if re.match(r"\| [1-7] \| ", line)]
    assert [row.split(" | ")[1] for row in rows] == ["4", "8", "16", "11.31", "13.45", "12.33", "11.81"]
    assert rows[2].endswith("| VALID SATURATED | failed |")
    assert rows[3].endswith("| 100.0 ≤ 500.0 | VALID | met |")
    steps = [line for line in note.splitlines() if line.startswith("| rate=16/s")]
    assert steps[0].endswith("| VALID SATURATED |")


def test_the_tables_of_a_search_name_each_objective_and_each_window(tmp_path: Path) -> None:
    run = search_run(LOADS[:3], flat_until(12.0), search_config({"ttft_p90_ms": 500}, per_request={"e2e_ms": 900.0}))
    directory = write_dir(tmp_path / "search", run)
    build([directory])
    summary = read_summary(directory / "summary.json")
    trials = shown.trials_table(summary)
    assert trials is not None
    assert trials.headers[5:7] == ["ttft_p90_ms", "goodput"]
    assert trials.rows[0][5:] == ["100.0 ≤ 500.0", "100.0% ≥ 95.0%", "VALID", "met"]
    assert trials.rows[2][5:] == ["2,000 > 500.0", "0% < 95.0%", "VALID", "failed"]
    windows = shown.windows_table(summary)
    assert windows is not None
    assert windows.rows[0][:5] == ["rate=4/s,constant", "fixed", "0.00", "0", "no"]


def test_a_repeated_run_report_shows_each_figure_across_runs(tmp_path: Path) -> None:
    directory = write_dir(tmp_path / "repeated", repeated_run(seed=0))
    written = build([directory])
    page = written.html.read_text()
    assert "<h2>Repeated runs</h2>" in page
    assert '<th class="num">95% interval</th>' in page and "<th>each of 3 runs</th>" in page
    assert "**Across repeated runs**" in written.markdown.read_text()


def test_a_falling_series_is_shown_with_its_own_sign(tmp_path: Path) -> None:
    def falling(load: float, i: int) -> float:  # TTFT that falls over the step: a cache warming up
        return 400.0 - 2.0 * i

    directory = write_dir(tmp_path / "falling", search_run([4.0], falling, search_config({"ttft_p90_ms": 500}), n=150))
    build([directory])
    windows = shown.windows_table(read_summary(directory / "summary.json"))
    assert windows is not None
    ttft_rise = windows.rows[0][-1]
    assert ttft_rise.startswith("-") and not ttft_rise.startswith("+"), ttft_rise


def test_a_figure_stands_against_its_limit_as_its_value_does() -> None:
    # The sign is the comparison's, not the outcome's: a p95 within its limit whose trial had too many failures
    # (429s included) failed, and says why instead of claiming 41.3 > 800.
    assert versus("ttft_p95_ms", 41.3, 800.0, met=False) == ("≤", " but too many requests failed")
    assert versus("ttft_p95_ms", 41.3, 800.0, met=True) == ("≤", "")
    assert versus("ttft_p95_ms", 900.0, 800.0, met=False) == (">", "")
    assert versus("goodput", 0.99, 0.95, met=True) == ("≥", "")
    assert versus("goodput", 0.90, 0.95, met=False) == ("<", "")
