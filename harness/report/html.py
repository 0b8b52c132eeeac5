"""The HTML report: one self-contained page (inline CSS, figures as base64 PNG), nothing fetched from a network.

It renders what `harness.commands.report` assembled — summaries, tables from `harness.report.tables`, figures from
`harness.report.plots` — and computes nothing itself.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from harness.analysis.shape import Summary
from harness.report import capacity, provenance, server, tables, traffic
from harness.report.tables import Table

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2329;
       background: #f5f6f8; }
header { background: #1d2b3a; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 6px; font-size: 22px; }
header .sub { color: #c5d0db; font-size: 13px; }
main { padding: 8px 32px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; padding: 14px 20px; margin: 16px 0; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e6e9ee; }
th { background: #eef1f5; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:last-child td { border-bottom: none; }
.badge { display: inline-block; padding: 2px 9px; border-radius: 10px; font-weight: 600; font-size: 12px;
         margin-right: 6px; }
.ok { background: #d4f4dd; color: #0f5b26; } .bad { background: #fbd9d5; color: #8a1c12; }
.na { background: #e6e9ee; color: #444; }
.note { color: #5b6670; font-size: 12.5px; }
.runs { display: flex; flex-wrap: wrap; gap: 24px; }
img { max-width: 100%; height: auto; border: 1px solid #eef0f3; }
ul { margin: 4px 0; } code { font-size: 12.5px; }
details summary { cursor: pointer; color: #2c5d8f; }
"""


@dataclass(frozen=True, slots=True)
class RunPart:
    """One run as the page shows it."""

    label: str
    summary: Summary
    conformance: Mapping[str, Any] | None  # the full conformance result, when there is one
    timeline_png: bytes
    capacity_png: bytes | None = None  # a capacity search's trials on their curve
    server_png: bytes | None = None  # the server's own metrics over the run, when they were scraped


@dataclass(frozen=True, slots=True)
class Figures:
    cdfs_png: bytes
    sweep_png: bytes | None
    lengths_png: bytes


def table(t: Table) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if t.right(i) else ""

    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(t.headers))
    head_row = f"<tr>{head}</tr>" if any(t.headers) else ""
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{escape(c)}</td>" for i, c in enumerate(row)) + "</tr>" for row in t.rows
    )
    return f"<table>{head_row}{body}</table>"


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def badge(text: str, good: bool | None) -> str:
    kind = "na" if good is None else "ok" if good else "bad"
    return f'<span class="badge {kind}">{escape(text)}</span>'


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(heading)}</h2>{body}</section>'


def _list(items: Iterable[str]) -> str:
    entries = "".join(f"<li>{escape(i)}</li>" for i in items)
    return f"<ul>{entries}</ul>" if entries else ""


def _badges(summary: Summary) -> str:
    verdict = summary["validity"]["verdict"]
    parts = [badge(verdict, verdict == "VALID")]
    conformance = summary.get("conformance")
    if conformance:
        counts = conformance["summary"]
        parts.append(badge(f"conformance {counts['passed']}/{counts['total']}", conformance["passed"]))
    else:
        parts.append(badge("conformance not run", None))
    limit = summary.get("limit")
    if limit:
        text = f"limit {limit['concurrency_limit']} " + ("honoured" if limit["honoured"] else "NOT honoured")
        parts.append(badge(text, limit["honoured"]))
    return "".join(parts)


_VERDICT_TEXT = {
    "VALID": "Every number below is within its tolerance of the truth, as far as the client could have moved it.",
    "INVALID": "Some numbers carry a larger error bound than their tolerance: the client may have moved them.",
    "UNUSABLE": "The run measured nothing: no request succeeded.",
}
_HOW = (
    "Each number carries the client's own error bound: how far its send stamps, its reads (the kernel's receive "
    "times, or the event loop's when the kernel did not stamp), its lateness against the schedule and the load it "
    "failed to offer may have moved it, from what the run measured about itself. A step is VALID when every bound "
    "is within the tolerance of its metric (by default the larger of 1 ms and 1 % of the value; 1 % for "
    "throughput and the load offered), for the mean and each percentile up to p99.9."
)


def _validity(part: RunPart) -> str:
    v = part.summary["validity"]
    verdict = v["verdict"]
    text = _VERDICT_TEXT.get(verdict, "")
    out = f"<h3>{escape(part.label)} {badge(verdict, verdict == 'VALID')}</h3><p>{escape(text)}</p>"
    out += _list(v["reasons"])
    worst = v.get("worst")
    if worst:
        out += (
            f"<p class='note'>Largest bound against its tolerance: {escape(worst['label'])}, "
            f"{escape(worst['metric'])} {escape(worst['stat'])} {worst['value']:,.3g} ± {worst['bound']:.2g} "
            f"(tolerance {worst['tolerance']:.2g}, {worst['ratio']:.0%} of it).</p>"
        )
    if v["warnings"]:
        out += "<p class='note'>Warnings:</p>" + _list(v["warnings"])
    tolerances = v.get("tolerances")
    for step in part.summary["steps"]:
        found = tables.bounds_table(step, tolerances)
        line = tables.load_line(step)
        if found is None and line is None:
            continue
        inner = (f"<p>{escape(line)}</p>" if line else "") + (table(found) if found is not None else "")
        verdict_badge = badge(step["validity"]["verdict"], step["validity"]["verdict"] == "VALID")
        out += f"<details><summary>{escape(step['label'])} {verdict_badge} bounds</summary>{inner}</details>"
    return out + f"<p class='note'>{escape(_HOW)}</p>"


def _limit(part: RunPart) -> str:
    summary = part.summary
    out = f"<h3>{escape(part.label)}</h3>"
    limit_table = tables.limit_table(summary)
    limit = summary.get("limit")
    if limit_table is None or limit is None:
        out += "<p class='note'>No closed-loop step, or the target's limit is unknown: not judged.</p>"
    else:
        out += (
            f"<p>Per-key limit {limit['concurrency_limit']} over {limit['keys']} key(s): "
            f"{badge('honoured' if limit['honoured'] else 'NOT honoured', limit['honoured'])} — no 429 expected at "
            "or below it, some expected above it.</p>"
            + table(limit_table)
            + f"<p class='note'>{escape(tables.LIMIT_NOTE)}</p>"
        )
    knee = summary.get("knee")
    if knee:
        out += (
            f"<p>Knee: <b>{escape(knee['label'])}</b> reaches {knee['output_tokens_per_s']:,.0f} output tokens/s, "
            f"≥ {knee['fraction']:.0%} of the sweep's best ({knee['best_output_tokens_per_s']:,.0f}).</p>"
        )
    return out


def _conformance(part: RunPart) -> str:
    out = f"<h3>{escape(part.label)}</h3>"
    counts = tables.conformance_table(part.summary)
    kept = part.summary.get("conformance")
    if counts is None or kept is None or part.conformance is None:
        return out + "<p class='note'>No conformance result beside the records (run <code>harness check</code>).</p>"
    out += table(counts)
    failures = kept["failures"]
    if failures:
        out += "<p><b>Failed checks</b></p>" + _list(f"{f['nodeid']}: {f['message'] or f['outcome']}" for f in failures)
    groups: dict[str, dict[str, int]] = {}
    for check in part.conformance.get("checks", []):
        counts_by = groups.setdefault(str(check.get("group") or "other"), {})
        counts_by[check["outcome"]] = counts_by.get(check["outcome"], 0) + 1
    rows = [
        [g, *(str(c.get(k, 0)) for k in ("passed", "failed", "error", "skipped"))] for g, c in sorted(groups.items())
    ]
    out += table(Table(["group", "passed", "failed", "error", "skipped"], rows))
    features = part.conformance.get("features") or {}
    if features:
        statuses = "".join(
            f"<tr><td>{escape(name)}</td><td>{badge(str(f['status']), f['status'] != 'failed')}</td></tr>"
            for name, f in features.items()
        )
        out += f"<p><b>Chat-surface features</b></p><table><tr><th>feature</th><th>status</th></tr>{statuses}</table>"
    checks = "".join(
        f"<tr><td>{escape(c['nodeid'])}</td><td>{badge(c['outcome'], c['outcome'] == 'passed')}</td></tr>"
        for c in part.conformance.get("checks", [])
    )
    return out + f"<details><summary>every check</summary><table>{checks}</table></details>"


def _capacity(parts: Sequence[RunPart]) -> list[str]:
    """The sections of searches, steady states and repeats, for the runs that have them (`harness.report.capacity`)."""
    out = []
    searched = [(p, found) for p in parts if (found := p.summary.get("capacity"))]
    if searched:
        text = "".join(
            f"<h3>{escape(p.label)}</h3><p><b>{escape(capacity.answer(found))}</b></p>"
            + (image(p.capacity_png, "capacity search") if p.capacity_png else "")
            + table(found_table)
            for p, found in searched
            if (found_table := capacity.trials_table(p.summary)) is not None
        )
        out.append(_section("capacity", "Capacity", text + f"<p class='note'>{escape(capacity.TRIALS_NOTE)}</p>"))
    windows = [(p, t) for p in parts if (t := capacity.windows_table(p.summary)) is not None]
    if windows:
        text = "".join(f"<h3>{escape(p.label)}</h3>{table(t)}" for p, t in windows)
        note = f"<p class='note'>{escape(capacity.WINDOWS_NOTE)}</p>"
        out.append(_section("windows", "Measurement windows and saturation", text + note))
    repeated = [(p, t) for p in parts if (t := capacity.repeats_table(p.summary)) is not None]
    if repeated:
        text = "".join(f"<h3>{escape(p.label)}</h3>{table(t)}" for p, t in repeated)
        out.append(_section("repeats", "Repeated runs", text))
    return out


def _header(parts: Sequence[RunPart], title: str) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = f"<header><h1>{escape(title)}</h1><div class='sub'>generated {generated} by harness report</div>"
    header += "".join(f"<div style='margin-top:8px'>{escape(p.label)}: {_badges(p.summary)}</div>" for p in parts)
    header += "".join(
        f"<div class='sub'>{escape(p.label)} measured on {escape(line)}</div>"
        for p in parts
        if (line := provenance.headline(p.summary))
    )
    return header + "</header>"


def _summary(parts: Sequence[RunPart]) -> str:
    summaries = [p.summary for p in parts]
    labels = [p.label for p in parts]
    note = f"<p class='note'>{escape(tables.STEP_NOTE)}</p>"
    if len(parts) == 1:
        return table(tables.steps_table(summaries[0])) + note
    return (
        "<h3>Side by side (all measured requests)</h3>"
        + table(tables.comparison_table(summaries, labels))
        + "<h3>Per step</h3>"
        + table(tables.steps_comparison_table(summaries, labels))
        + "".join(
            f"<details><summary>{escape(p.label)}: every step</summary>{table(tables.steps_table(p.summary))}</details>"
            for p in parts
        )
        + note
    )


def _timing(parts: Sequence[RunPart]) -> str | None:
    """The timing error against ground truth, for the runs that have one (None: none has)."""
    timing = [
        (p, t, e) for p in parts if (t := tables.timing_table(p.summary)) and (e := p.summary.get("timing_error_ms"))
    ]
    if not timing:
        return None
    text = "<p class='note'>The harness's own timings against the reference server's traces.</p>"
    for p, t, errors in timing:
        stamps, warn = tables.arrival_stamps(errors)
        note = (
            f"<p>{badge('warning', False)} {escape(stamps)}</p>" if warn else f"<p class='note'>{escape(stamps)}.</p>"
        )
        text += f"<h3>{escape(p.label)}</h3>{note}{table(t)}"
        if (cells := tables.truth_table(p.summary)) is not None:
            text += (
                "<p>Each statistic against the ground truth's over the same requests, beside the bound the run "
                "gave it:</p>" + table(cells)
            )
    return text


def _traffic(label: str, body: traffic.Body) -> str:
    """One run's part of a real-traffic section (`harness.report.traffic`)."""
    return f"<h3>{escape(label)}</h3>" + "".join(
        table(item) if isinstance(item, Table) else f"<p class='note'>{escape(item)}</p>" for item in body
    )


def _server(part: RunPart) -> str:
    """The server's own view of each step beside the client's (its Prometheus metrics), or why there is none."""
    out = f"<h3>{escape(part.label)}</h3>"
    line = server.sources_line(part.summary)
    loads, latencies = server.load_table(part.summary), server.latency_table(part.summary)
    if loads is None or latencies is None:
        why = line or "No server metrics beside the records (the target's /metrics was not scraped)."
        return out + f"<p class='note'>{escape(why)}</p>"
    out += f"<p class='note'>{escape(line or '')}</p>" + table(loads) + table(latencies)
    if part.server_png is not None:
        out += image(part.server_png, "the server's metrics over the run")
    return out + f"<p class='note'>{escape(server.NOTE)}</p>"


def render(parts: Sequence[RunPart], figures: Figures) -> str:
    """The whole page."""
    title = "Load test report — " + " vs ".join(p.label for p in parts)
    targets = "".join(f"<div><h3>{escape(p.label)}</h3>{table(tables.target_table(p.summary))}</div>" for p in parts)
    targets += "".join(
        f"<div><h3>{escape(p.label)}: measured on</h3>{table(env)}</div>"
        for p in parts
        if (env := provenance.table(p.summary)) is not None
    )
    body = [
        _section("target", "Target and configuration", f"<div class='runs'>{targets}</div>"),
        _section("validity", "Validity", "".join(_validity(p) for p in parts)),
        _section("summary", "Summary", _summary(parts)),
        *_capacity(parts),
        _section("limit", "Concurrency limit and knee", "".join(_limit(p) for p in parts)),
        _section("conformance", "Conformance", "".join(_conformance(p) for p in parts)),
    ]
    if (timing := _timing(parts)) is not None:
        body.append(_section("timing", "Timing error against ground truth", timing))
    for anchor, heading, runs in traffic.by_section([(p.label, p.summary) for p in parts]):
        body.append(_section(anchor, heading, "".join(_traffic(label, found) for label, found in runs)))
    body.append(_section("server", "Server", "".join(_server(p) for p in parts)))
    body.append(_section("cdfs", "Latency distributions", image(figures.cdfs_png, "latency CDFs")))
    sweep = (
        image(figures.sweep_png, "throughput and latency against load")
        if figures.sweep_png is not None
        else "<p class='note'>A single load level: no sweep to draw.</p>"
    )
    body.append(_section("sweep", "Throughput and latency against load", sweep))
    timelines = "".join(f"<h3>{escape(p.label)}</h3>{image(p.timeline_png, 'timeline')}" for p in parts)
    body.append(_section("timeline", "Timeline", timelines))
    body.append(_section("lengths", "Prompt and output lengths", image(figures.lengths_png, "length histograms")))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{_header(parts, title)}<main>{''.join(body)}</main></body></html>\n"
    )
