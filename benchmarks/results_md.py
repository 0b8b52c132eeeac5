"""`benchmarks/RESULTS.md`: one section per benchmark, each rewritten only by the benchmark that owns it."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
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
