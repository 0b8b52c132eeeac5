"""`harness report DIR [DIR ...]`: the report of one run, or of several side by side.

For each run directory (records from `harness bench`, `harness run` or Locust workers, merged when several) it
writes `summary.json` (validated by `schemas/summary.json`) beside the records; then `report.html` (one
self-contained page) and `report.md` (the same summary, fit for a pull-request comment) — beside the records for
one run, in `<parent>/compare-<labels>/` (or `--output-dir`) for several.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from harness.analysis import validity
from harness.analysis.frame import latency_samples
from harness.analysis.slo import Slo
from harness.analysis.stats import Floats
from harness.analysis.summary import build_summary, write_summary
from harness.analysis.timeline import timeline
from harness.records import rundir
from harness.report import html, plots, tables
from harness.report.tables import Table

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"


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


@dataclass(frozen=True, slots=True)
class Written:
    html: Path
    markdown: Path
    summaries: list[Path]


def _labels(directories: Sequence[Path], labels: str | None) -> list[str]:
    if labels is None:
        return [d.resolve().name for d in directories]
    names = [label.strip() for label in labels.split(",")]
    if len(names) != len(directories) or not all(names):
        raise ValueError(f"--labels needs {len(directories)} non-empty names, one per run")
    return names


def _output_dir(directories: Sequence[Path], labels: Sequence[str], output_dir: Path | None) -> Path:
    if output_dir is not None:
        return output_dir
    if len(directories) == 1:
        return directories[0]
    safe = "-vs-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", label) for label in labels)
    return directories[0].resolve().parent / f"compare-{safe}"


def build(
    directories: Sequence[Path],
    labels: str | None = None,
    output_dir: Path | None = None,
    slo: Slo | None = None,
    limit: int | None = None,
    tolerances: validity.Tolerances | None = None,
) -> Written:
    """Summarize every run, then write the report; ValueError when a run cannot be read."""
    names = _labels(directories, labels)
    out = _output_dir(directories, names, output_dir)
    parts: list[html.RunPart] = []
    samples: list[tuple[str, dict[str, Floats]]] = []
    summaries: list[Path] = []
    for directory, label in zip(directories, names, strict=True):
        rd = rundir.load(directory)
        summary = build_summary(rd, slo, limit, tolerances)
        summaries.append(write_summary(directory, summary))
        run_limit = found["concurrency_limit"] if (found := summary.get("limit")) else None
        frame = timeline(rd.run)
        parts.append(
            html.RunPart(label, summary, rd.conformance, plots.timeline(frame, rd.run.steps, run_limit, label))
        )
        samples.append((label, latency_samples(rd.run)))
    figures = html.Figures(
        plots.cdfs(samples), plots.sweep([(p.label, p.summary) for p in parts]), plots.lengths(samples)
    )
    out.mkdir(parents=True, exist_ok=True)
    page = out / HTML_FILE
    page.write_text(html.render(parts, figures), encoding="utf-8")
    note = out / MARKDOWN_FILE
    note.write_text(markdown([p.summary for p in parts], names), encoding="utf-8")
    return Written(page, note, summaries)


def md_table(t: Table) -> str:
    def clean(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(clean(h) or " " for h in t.headers) + " |"]
    lines.append("|" + "|".join("---:" if t.right(i) else "---" for i in range(len(t.headers))) + "|")
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _headline(summary: Mapping[str, Any]) -> str:
    parts = [f"**{summary['validity']['verdict']}**"]
    conformance = summary.get("conformance")
    if conformance:
        counts = conformance["summary"]
        parts.append(f"conformance {counts['passed']}/{counts['total']}" + ("" if conformance["passed"] else " ❌"))
    limit = summary.get("limit")
    if limit:
        parts.append(f"limit {limit['concurrency_limit']} " + ("honoured" if limit["honoured"] else "**NOT honoured**"))
    knee = summary.get("knee")
    if knee:
        parts.append(f"knee at {knee['label']}")
    return " · ".join(parts)


def _details(summary: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    v = summary["validity"]
    lines += [f"- {v['verdict']}: {r}" for r in v["reasons"]] + [f"- warning: {w}" for w in v["warnings"]]
    worst = v.get("worst")
    if worst:
        lines.append(
            f"- largest error bound: {worst['label']} {worst['metric']} {worst['stat']} {worst['value']:,.3g} "
            f"± {worst['bound']:.2g} ({worst['ratio']:.0%} of its tolerance {worst['tolerance']:.2g})"
        )
    conformance = summary.get("conformance")
    if conformance:
        lines += [
            f"- conformance {f['outcome']}: `{f['nodeid']}` {f['message'] or ''}".rstrip()
            for f in conformance["failures"][:20]
        ]
    timing = summary.get("timing_error_ms")
    if timing:
        stamps, warn = tables.arrival_stamps(timing)
        lines.append(
            f"- timing error against ground truth: TTFT p99 {tables.ms(timing['ttft']['p99'])} ms, "
            f"ITL p99 {tables.ms(timing['itl']['p99'])} ms ({timing['matched']} requests"
            + ("" if warn else f"; {stamps}")
            + ")"
        )
        if warn:
            lines.append(f"- warning: {stamps}")
    return lines


def markdown(summaries: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """The summary for a pull-request comment."""
    lines = [f"## Load test: {' vs '.join(labels)}", ""]
    for summary, label in zip(summaries, labels, strict=True):
        target = summary["target"]
        lines.append(f"**{label}** — {_headline(summary)}  ")
        lines.append(f"target: {target.get('description') or target.get('base_url')} · model `{target.get('model')}`")
        lines += [*_details(summary), ""]
    if len(summaries) == 1:
        lines.append(md_table(tables.steps_table(summaries[0])))
    else:
        lines += [md_table(tables.comparison_table(summaries, labels)), ""]
        lines.append(md_table(tables.steps_comparison_table(summaries, labels)))
    lines += ["", f"_{tables.STEP_NOTE}_", "", f"Full report: `{HTML_FILE}`.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        tolerances = validity.Tolerances.parse(args.tolerance) if args.tolerance else None
        written = build(args.runs, args.labels, args.output_dir, args.slo, args.concurrency_limit, tolerances)
    except (ValueError, OSError, orjson.JSONDecodeError) as exc:
        print(f"harness report: {exc}", file=sys.stderr)
        return 2
    for path in written.summaries:
        print(f"summary: {path}")
    print(f"report: {written.html}\nmarkdown: {written.markdown}")
    return 0
