"""`benchmarks/RESULTS.md`: one section per benchmark, each rewritten only by the benchmark that owns it; and the date
and command line a result records."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.support import ROOT

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HEADER = """# Benchmark results

The latest result of each benchmark in `benchmarks/`, one section per benchmark, each with its date, machine and
command. Each benchmark compares with baselines measured in the same run; rerun the command to refresh a section.
"""


def update_section(heading: str, section: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section that starts with `heading`, leaving the other sections alone."""
    text = path.read_text() if path.exists() else HEADER
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("" if end < 0 else "\n" + text[end + 1 :])
    path.write_text(text)


def command(module: str, argv: Sequence[str] | None = None) -> str:
    """The command line a result records: `python -m MODULE` and its options (this process's, when not given)."""
    return shlex.join(["python", "-m", module, *(argv if argv is not None else sys.argv[1:])])


def now_utc() -> str:
    """The date and minute a result records."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def publish(
    heading: str,
    module: str,
    when: str,
    where: object,
    body: str,
    *,
    update: bool,
    setup: str = "",
    path: Path = RESULTS,
) -> None:
    """Print a result; with `update`, make it the section `heading` of RESULTS.md too, with its date, machine and
    command (and `setup`: what the command line does not say)."""
    print(f"\n{body}")
    if update:
        head = f"Date: {when}. Machine: {where}. Command: `{command(module)}`." + (f" {setup}" if setup else "")
        update_section(heading, f"{heading}\n\n{head}\n\n{body}\n", path)
