"""`harness report DIR [DIR ...]`: the report of one run, or of several side by side (`harness.report.build`).

For each run directory (records from `harness bench`, `harness run` or Locust workers, merged when several) it
writes `summary.json` (validated by `schemas/summary.json`) beside the records; then `report.html` (one
self-contained page) and `report.md` (the same summary, fit for a pull-request comment) — beside the records for
one run, in `<parent>/compare-<labels>/` (or `--output-dir`) for several.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from harness.analysis import validity
from harness.analysis.slo import Slo
from harness.report.build import build as build_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="DIR", help="run directories holding records*.jsonl")
    parser.add_argument("--labels", help="names for the runs, comma-separated (default: the directory names)")
    parser.add_argument(
        "--output-dir", type=Path, help="where report.html and report.md go (default: beside the records)"
    )
    parser.add_argument("--slo", type=Slo.parse, help="goodput SLOs, e.g. ttft_ms=500,e2e_ms=5000 (default: kept)")
    parser.add_argument(
        "--concurrency-limit",
        type=int,
        help="the target's per-key limit (default: as recorded with the run or by its conformance result)",
    )
    parser.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="error-bound tolerance for the verdict, e.g. ttft=2ms or itl=2%% (repeatable; default: as kept)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        tolerances = validity.Tolerances.parse(args.tolerance) if args.tolerance else None
        written = build_report(args.runs, args.labels, args.output_dir, args.slo, args.concurrency_limit, tolerances)
    except (ValueError, OSError, orjson.JSONDecodeError) as exc:
        print(f"harness report: {exc}", file=sys.stderr)
        return 2
    for path in written.summaries:
        print(f"summary: {path}")
    print(f"report: {written.html}\nmarkdown: {written.markdown}")
    return 0
