"""The report: the Markdown section of `benchmarks/RESULTS.md` (rates, ratios against GuideLLM and bare aiohttp,
CPU per unit of work, the goals, what each probe response looked like) and the same results as JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmarks.server_capacity.measurement import Measurement, ServerResult
from benchmarks.server_capacity.servers import LOAD_CPU, OUTPUT_TOKENS, SERVER_CPU

GOALS = {"non_streamed": 5.0, "streamed": 2.5}  # ours / GuideLLM
# Measured on this machine class when the issue was written (for context only; the ratios use this run).
ISSUE_REFERENCE = {"guidellm": (1429.0, 28_000.0), "bare": (38_900.0, 136_000.0)}
SECTION = "## Server capacity: one server core, wrk on the other (`python -m benchmarks.server_capacity`)"


def _rate_cell(m: Measurement | None) -> str:
    if m is None or not m.runs:
        return "—"
    cell = f"{m.rate:,.0f}"
    if len(m.runs) > 1:
        cell += f" ({min(m.rates):,.0f}–{max(m.rates):,.0f})"
    return cell + ("" if m.valid else " INVALID")


def _ratio(a: Measurement | None, b: Measurement | None, by_cpu: bool = False) -> float | None:
    if not (a and b and a.runs and b.runs):
        return None
    if by_cpu:
        return b.cpu_us_per_response / a.cpu_us_per_response if a.cpu_us_per_response else None
    return a.rate / b.rate if b.rate else None


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def report(results: list[ServerResult], meta: dict[str, Any]) -> str:
    by = {r.server: r for r in results}
    mach = meta["machine"]
    lines = [
        SECTION,
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {mach['nproc']} CPUs, {mach['cpu']}, Linux {mach['kernel']}, Python {mach['python']}; "
        f"load average before the run {mach['load_avg']}",
        f"- load: {meta['wrk']}, 1 thread, {meta['connections']} keep-alive connections; server on CPU {SERVER_CPU}, "
        f"wrk on CPU {LOAD_CPU}; {meta['rounds']} interleaved rounds of {meta['round_s']} s per number "
        f"(each after a warm-up); the median round is reported, with the range in brackets",
        f"- request: POST /v1/chat/completions, `max_tokens: {OUTPUT_TOKENS}`, `ignore_eos: true`; "
        "chunks/s = completed streams/s × content chunks per stream (counted in probe responses)",
        f"- GuideLLM: {meta['guidellm']}",
        "",
        "| server | non-streamed req/s | streamed chunks/s | streams/s | server CPU (plain / stream) "
        "| wrk CPU | other processes' CPU | p50 / p99 ms (plain) | p50 / p99 ms (stream) |",
        "|---|---:|---:|---:|---|---|---|---|---|",
    ]
    for r in results:
        p, s = r.plain, r.stream
        both = p is not None and s is not None and bool(p.runs) and bool(s.runs)

        def pair(attr: str, p: Measurement | None = p, s: Measurement | None = s, both: bool = both) -> str:
            return f"{p.median(attr):.0%} / {s.median(attr):.0%}" if both and p and s else "—"

        def lat(m: Measurement | None) -> str:
            return f"{m.median('p50_ms'):.1f} / {m.median('p99_ms'):.1f}" if m and m.runs else "—"

        streams = f"{s.responses_per_s:,.0f}" if s and s.runs else "—"
        lines.append(
            f"| {r.label} | {_rate_cell(p)} | {_rate_cell(s)} | {streams} | {pair('server_cpu')} "
            f"| {pair('load_cpu')} | {pair('other_cpu')} | {lat(p)} | {lat(s)} |"
        )
    ours, gl, bare = by.get("ours"), by.get("guidellm"), by.get("bare")

    def m(r: ServerResult | None, stream: bool) -> Measurement | None:
        return r.mode(stream) if r else None

    lines += ["", "| ratio | non-streamed req/s | streamed chunks/s |", "|---|---:|---:|"]
    if ours and gl:
        goals = f"goal ≥ {GOALS['non_streamed']:g}× / ≥ {GOALS['streamed']:g}×"
        lines.append(
            f"| **ours / GuideLLM** ({goals}) | {_x(_ratio(m(ours, False), m(gl, False)))} "
            f"| {_x(_ratio(m(ours, True), m(gl, True)))} |"
        )
        lines.append(
            f"| ours / GuideLLM, by server CPU per unit of work | "
            f"{_x(_ratio(m(ours, False), m(gl, False), True))} | {_x(_ratio(m(ours, True), m(gl, True), True))} |"
        )
    for a, b, label in ((ours, bare, "ours / bare aiohttp"), (gl, bare, "GuideLLM / bare aiohttp")):
        if a and b:
            lines.append(f"| {label} | {_x(_ratio(m(a, False), m(b, False)))} | {_x(_ratio(m(a, True), m(b, True)))} |")
    lines += [
        "",
        "Server CPU per unit of work (CPU time of the server process during the measured runs / work done; it "
        "depends less on other load on the machine than the rates do):",
        "",
        "| server | µs CPU per non-streamed request | µs CPU per stream | µs CPU per chunk |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        p, s = r.plain, r.stream
        per_req = f"{p.cpu_us_per_response:,.0f}" if p and p.runs else "—"
        per_stream = f"{s.cpu_us_per_response:,.0f}" if s and s.runs else "—"
        per_chunk = (
            f"{s.cpu_us_per_response / s.chunks_per_response:,.1f}" if s and s.runs and s.chunks_per_response else "—"
        )
        lines.append(f"| {r.label} | {per_req} | {per_stream} | {per_chunk} |")
    lines.append("")
    if ours and gl:
        for stream, goal in ((False, GOALS["non_streamed"]), (True, GOALS["streamed"])):
            ratio = _ratio(m(ours, stream), m(gl, stream))
            if ratio is not None:
                verdict = "MET" if ratio >= goal else "MISSED"
                lines.append(
                    f"- {'streamed chunks/s' if stream else 'non-streamed req/s'}: ours is {ratio:.2f}× GuideLLM "
                    f"— goal ≥ {goal:g}×: **{verdict}**"
                )
    ref = ISSUE_REFERENCE
    lines.append(
        "- for context, the issue's earlier measurements on this machine class: "
        f"GuideLLM {ref['guidellm'][0]:,.0f} req/s and ≈{ref['guidellm'][1]:,.0f} chunks/s, "
        f"bare aiohttp {ref['bare'][0]:,.0f} req/s and ≈{ref['bare'][1]:,.0f} chunks/s"
    )
    for r in results:
        lines.append(f"- {r.label}" + (f": {r.note}" if r.note else ""))
        for mode, mm in (("non-streamed", r.plain), ("streamed", r.stream)):
            if mm is None:
                continue
            pr = mm.probes[0]
            shape = f"{pr.events} SSE events + [DONE], {pr.content_chunks} with content, " if mm.stream else ""
            requests = sum(run.requests for run in mm.runs)
            read = f"; wrk read {sum(run.bytes for run in mm.runs) / requests:,.0f} B per response" if requests else ""
            sizes = sorted({p.wire_bytes for p in mm.probes})
            lines.append(f"  - {mode}: a probe response is {shape}{'/'.join(map(str, sizes))} B on the wire{read}")
            lines += [f"  - INVALID {mode}: {problem}" for problem in dict.fromkeys(mm.problems)]
            lines += [f"  - warning {mode}: {warning}" for warning in mm.warnings]
        if r.failure:
            lines.append(f"  - FAILED: {r.failure}")
    return "\n".join(lines) + "\n"


def as_json(r: ServerResult) -> dict[str, Any]:
    def one(m: Measurement | None) -> dict[str, Any] | None:
        if m is None:
            return None
        return {
            "rate_per_s": m.rate,
            "unit": "chunks/s" if m.stream else "requests/s",
            "rates_per_round": m.rates,
            "responses_per_s": m.responses_per_s,
            "chunks_per_response": m.chunks_per_response,
            "cpu_us_per_response": m.cpu_us_per_response,
            "probe_bytes": [p.wire_bytes for p in m.probes],
            "runs": [dataclasses.asdict(run) for run in m.runs],
            "problems": m.problems,
            "warnings": m.warnings,
        }

    return {"server": r.server, "label": r.label, "plain": one(r.plain), "stream": one(r.stream), "failure": r.failure}
