"""`harness gate SUMMARY --thresholds FILE [--baseline SUMMARY]`: pass or fail a run, for CI.

Absolute thresholds (a TOML file validated by `schemas/gate_thresholds.json`) are checked against the summary;
with a baseline, the per-request samples of both runs (the records beside each summary) are compared
statistically (`harness.analysis.regression`). Exit 0 when every check passes, 1 when one fails, 2 when the input
cannot be judged: a summary or thresholds file that does not validate, an INVALID run or baseline (its client was
the bottleneck), or a baseline that measured another target or another configuration. A JUnit XML file and a
Markdown verdict are written beside the summary (or where asked).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.gate.evaluation import evaluate
from harness.gate.output import write
from harness.gate.thresholds import DEFAULT_THRESHOLDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("summary", type=Path, help="reports/<run-id>/summary.json")
    parser.add_argument("--thresholds", type=Path, help=f"TOML thresholds (default: the shipped {DEFAULT_THRESHOLDS})")
    parser.add_argument("--baseline", type=Path, help="the baseline's summary.json (its records lie beside it)")
    parser.add_argument("--junit", type=Path, help="JUnit XML output (default: gate.xml beside the summary)")
    parser.add_argument("--markdown", type=Path, help="Markdown verdict (default: gate.md beside the summary)")


def run(args: argparse.Namespace) -> int:
    verdict = evaluate(args.summary, args.thresholds, args.baseline)
    print(write(verdict, args.summary, args.junit, args.markdown))
    print(f"gate: {verdict.word} (exit {verdict.code})")
    return verdict.code
