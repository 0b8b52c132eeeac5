"""The feature matrix: conformance results side by side, one column per target, one row per chat-surface feature.

`python -m harness.conformance.matrix NAME=result.json ...` prints the table; with `--readme README.md` it
rewrites those columns of the table between the README's `<!-- feature-matrix -->` markers and keeps the others,
so that each column can be produced by the run that measured it. The project's tests compare each README column
with the column rendered from a fresh run of the suite, so the README shows what the suite reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.conformance.features import FEATURES

START = "<!-- feature-matrix -->"
END = "<!-- /feature-matrix -->"
HEAD = "feature"
OTHERS = "every other check of the suite"
ROWS: tuple[str, ...] = (*(f.label for f in FEATURES), OTHERS)


def column(result: Mapping[str, Any]) -> list[str]:
    """The cells of one target's column, in the order of `ROWS`."""
    features: Mapping[str, Any] = result["features"]
    cells = []
    for feature in FEATURES:
        found = features.get(feature.name)
        if found is None:
            cells.append("not run")
        elif found["status"] == "offered":
            cells.append("passes")
        elif found["status"] == "not offered":
            cells.append("not offered")
        else:
            cells.append("**fails** " + ", ".join(f"`{c}`" for c in found["checks"]))
    others = [c for c in result["checks"] if c["feature"] is None]
    passed = sum(1 for c in others if c["outcome"] == "passed")
    cells.append(f"{passed} of {len(others)} pass")
    return cells


def render(columns: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A Markdown table: the feature rows against the named columns."""
    lines = [
        "| " + " | ".join([HEAD, *(name for name, _ in columns)]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for n, row in enumerate(ROWS):
        lines.append("| " + " | ".join([row, *(cells[n] for _, cells in columns)]) + " |")
    return "\n".join(lines)


def _split(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse(text: str) -> list[tuple[str, list[str]]]:
    """The columns of the matrix in a document (between its markers); none if it has no matrix yet."""
    if START not in text:
        return []
    block = text.split(START, 1)[1].split(END, 1)[0]
    lines = [line for line in block.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return []
    names = _split(lines[0])[1:]
    rows = {_split(line)[0]: _split(line)[1:] for line in lines[2:]}
    return [(name, [rows.get(row, [""] * len(names))[n] for row in ROWS]) for n, name in enumerate(names)]


def readme_column(text: str, name: str) -> list[str] | None:
    return next((cells for found, cells in parse(text) if found == name), None)


def update(text: str, columns: Mapping[str, Sequence[str]]) -> str:
    """The document with these columns replaced (or added at the right), the other columns kept."""
    if START not in text or END not in text:
        raise ValueError(f"the document has no {START} … {END} block to write the matrix into")
    kept = parse(text)
    merged = [(name, list(columns.get(name, cells))) for name, cells in kept]
    merged += [(name, list(cells)) for name, cells in columns.items() if name not in dict(kept)]
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    return f"{before}{START}\n{render(merged)}\n{END}{after}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.conformance.matrix", description=__doc__)
    parser.add_argument("columns", nargs="+", metavar="NAME=RESULT.json", help="a column and its conformance result")
    parser.add_argument("--readme", type=Path, help="rewrite these columns of this document's matrix in place")
    args = parser.parse_args(argv)
    columns: dict[str, list[str]] = {}
    for spec in args.columns:
        name, sep, path = spec.partition("=")
        if not sep or not name:
            parser.error(f"expected NAME=RESULT.json, got {spec!r}")
        columns[name] = column(json.loads(Path(path).read_text(encoding="utf-8")))
    if args.readme is None:
        print(render(list(columns.items())))
        return 0
    args.readme.write_text(update(args.readme.read_text(encoding="utf-8"), columns), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
