"""The report of one run, or of several side by side: each run summarized (`summary.json` beside its records),
then `report.html` (one self-contained page) and `report.md` (the same summary, fit for a pull-request comment) —
beside the records for one run, in `<parent>/compare-<labels>/` (or the directory asked for) for several.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis import server, validity
from harness.analysis.frame import latency_samples
from harness.analysis.slo import Slo
from harness.analysis.stats import Floats
from harness.analysis.summary import build_summary, write_summary
from harness.analysis.timeline import timeline
from harness.records import rundir
from harness.report import html, plots
from harness.report import server as server_section
from harness.report.markdown import markdown

HTML_FILE = "report.html"


MARKDOWN_FILE = "report.md"


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


def _server_figure(rd: rundir.RunDir, frame: pd.DataFrame, label: str) -> bytes | None:
    """The server's own metrics over the run against the client's timeline (None: none were scraped)."""
    if rd.server_metrics is None:
        return None
    return server_section.figure(server.timeline(server.Scraped(rd.server_metrics)), frame, rd.run.steps, label)


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
        drawn = plots.timeline(frame, rd.run.steps, run_limit, label)
        search = summary.get("capacity")
        searched = plots.capacity(search, label) if search else None
        server_png = _server_figure(rd, frame, label)
        parts.append(html.RunPart(label, summary, rd.conformance, drawn, searched, server_png))
        samples.append((label, latency_samples(rd.run)))
    figures = html.Figures(
        plots.cdfs(samples), plots.sweep([(p.label, p.summary) for p in parts]), plots.lengths(samples)
    )
    out.mkdir(parents=True, exist_ok=True)
    page = out / HTML_FILE
    page.write_text(html.render(parts, figures), encoding="utf-8")
    note = out / MARKDOWN_FILE
    note.write_text(markdown([p.summary for p in parts], names, HTML_FILE), encoding="utf-8")
    return Written(page, note, summaries)
