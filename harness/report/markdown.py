"""The report as Markdown, fit for a pull-request comment: each run's verdict and headline, then the step tables."""

from __future__ import annotations

from collections.abc import Sequence

from harness.analysis.shape import Summary
from harness.report import capacity, provenance, server, tables, traffic
from harness.report.tables import Table


def md_table(t: Table) -> str:
    def clean(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(clean(h) or " " for h in t.headers) + " |"]
    lines.append("|" + "|".join("---:" if t.right(i) else "---" for i in range(len(t.headers))) + "|")
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _headline(summary: Summary) -> str:
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
    found = summary.get("capacity")
    if found:
        parts.append(f"capacity {found['answer']:g} {found['unit']}" if found["answer"] is not None else "no capacity")
    return " · ".join(parts)


def _details(summary: Summary) -> list[str]:
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


def _searched(summary: Summary) -> list[str]:
    """A search's answer and trials, and a repeated run's spread, after the step table."""
    lines: list[str] = []
    found = summary.get("capacity")
    trials = capacity.trials_table(summary)
    if found and trials is not None:
        lines += ["", f"**Capacity**: {capacity.answer(found)}", "", md_table(trials)]
    repeats = capacity.repeats_table(summary)
    if repeats is not None:
        lines += ["", "**Across repeated runs**", "", md_table(repeats)]
    return lines


def _server(summary: Summary, label: str | None) -> list[str]:
    """The server's own view of each step, when its metrics were scraped."""
    loads, latencies = server.load_table(summary), server.latency_table(summary)
    if loads is None or latencies is None:
        return []
    heading = "### Server" + (f": {label}" if label else "")
    return [heading, "", f"_{server.sources_line(summary)}_", "", md_table(loads), "", md_table(latencies), ""]


def markdown(summaries: Sequence[Summary], labels: Sequence[str], page: str = "report.html") -> str:
    """The summary for a pull-request comment; `page` names the full report."""
    lines = [f"## Load test: {' vs '.join(labels)}", ""]
    for summary, label in zip(summaries, labels, strict=True):
        target = summary["target"]
        lines.append(f"**{label}** — {_headline(summary)}  ")
        lines.append(f"target: {target.get('description') or target.get('base_url')} · model `{target.get('model')}`")
        if (measured_on := provenance.headline(summary)) is not None:
            lines.append(f"measured on {measured_on}")
        lines += [*_details(summary), ""]
    if len(summaries) == 1:
        lines.append(md_table(tables.steps_table(summaries[0])))
        lines += _searched(summaries[0])
    else:
        lines += [md_table(tables.comparison_table(summaries, labels)), ""]
        lines.append(md_table(tables.steps_comparison_table(summaries, labels)))
    lines += ["", f"_{tables.STEP_NOTE}_", ""]
    for _, heading, runs in traffic.by_section(list(zip(labels, summaries, strict=True))):
        lines += [f"### {heading}", ""]
        for label, body in runs:
            lines += [f"**{label}**", ""] if len(summaries) > 1 else []
            for item in body:
                lines += [md_table(item) if isinstance(item, Table) else item, ""]
    for summary, label in zip(summaries, labels, strict=True):
        lines += _server(summary, label if len(summaries) > 1 else None)
    lines += [f"Full report: `{page}`.", ""]
    return "\n".join(lines)
