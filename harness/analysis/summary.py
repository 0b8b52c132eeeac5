"""The summary of a run — `summary.json` — built in one place, from its records and what lies beside them.

Every figure comes from the records: which requests a step measures and its service figures
(`harness.analysis.service`), the per-request metrics (`harness.analysis.frame`), each step's table with the error
bound of every number (`harness.analysis.table`, `harness.analysis.bounds`), the sweep's knee and limit behaviour
(`harness.analysis.sweep`), the timing error against the server's ground truth (`harness.analysis.accuracy`), the
figures of sessions, prefix caching and trace replay (`harness.analysis.traffic`), the server's own view of each
step from its scraped Prometheus metrics (`harness.analysis.server`) and the verdict from the bounds
(`harness.analysis.validity`). The summary is checked against `schemas/summary.json` before it
is written; `harness.analysis.shape` gives its types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import jsonschema
import numpy as np
import orjson

import schemas
from harness.analysis import bounds, capacity, repeats, saturation, server, service, steady, validity
from harness.analysis.accuracy import timing_errors
from harness.analysis.frame import rejections, request_frame
from harness.analysis.objectives import Objectives
from harness.analysis.shape import (
    Capacity,
    Conformance,
    Failure,
    Figures,
    Repeats,
    RunEnvironment,
    StepSummary,
    Summary,
    Table,
)
from harness.analysis.slo import Slo
from harness.analysis.stats import round6 as _round
from harness.analysis.sweep import knee, limit_behaviour
from harness.analysis.table import Group, load_figures, loop_estimate_ms, offered, step_table, window_s
from harness.analysis.traffic import traffic
from harness.records.record import Record, RunFile, StepInfo
from harness.records.rundir import CONFORMANCE_RESULT, SUMMARY_FILE, RunDir
from harness.records.server_metrics import ServerMetrics
from harness.records.truth import Truth

VERSION = 1


def build_summary(
    rd: RunDir, slo: Slo | None = None, limit: int | None = None, tolerances: validity.Tolerances | None = None
) -> Summary:
    """The full summary of a run directory: metrics, validity, limit behaviour, timing error and conformance.

    The SLOs and tolerances of an earlier summary of the run are kept unless others are given.
    """
    if slo is None and rd.previous and rd.previous.get("slo"):
        slo = Slo(**rd.previous["slo"])
    search = rd.run.run.config.get("capacity")
    if slo is None and isinstance(search, dict):  # a search's goodput is judged with its own per-request SLOs
        slo = Objectives.from_dict(search.get("slo") or {}).per_request
    summary = summarize(
        rd.run,
        slo,
        concurrency_limit=limit if limit is not None else concurrency_limit(rd),
        truth=rd.truth,
        server_metrics=rd.server_metrics,
    )
    judged_with = tolerances or _kept_tolerances(rd.previous)
    summary = validity.apply(summary, judged_with)
    summary["conformance"] = _conformance(rd)
    summary["sources"] = [p.name for p in rd.files]
    return across_steps(summary, rd.run, judged_with)


def across_steps(summary: Summary, run: RunFile, tolerances: validity.Tolerances | None = None) -> Summary:
    """What the judged steps make together: a capacity search's answer and a repeated plan's spread, when the run
    was either (the trials of a search are judged with their verdicts, and the tolerances those were judged with,
    so this comes after them)."""
    search = run.run.config.get("capacity")
    if isinstance(search, dict):
        settled, _ = steady.settle(run)
        found = cast(Capacity, capacity.analyse(summary["steps"], settled, search, tolerances))
        summary["capacity"] = found
        summary["validity"] = capacity.run_validity(summary["validity"], summary["steps"], found["trials"])
    if (spread := repeats.across(summary["steps"])) is not None:
        summary["repeats"] = cast(Repeats, spread)
    return summary


def summarize(
    run: RunFile,
    slo: Slo | None = None,
    *,
    concurrency_limit: int | None = None,
    truth: Mapping[str, Truth] | None = None,
    server_metrics: ServerMetrics | None = None,
) -> Figures:
    """The run's figures: a table per step and one over every measured request (no verdict, no conformance yet).

    With the target's per-key `concurrency_limit` it says whether the limit showed as it should; with the
    server's ground truth, how far the measured timings are from it; with the server's own metrics, what it saw.
    """
    run, windows = steady.settle(run)
    measured = service.measured(run.requests, run.steps)
    frame = request_frame(measured)
    loop_ms, wake_ms, lateness = np.zeros(len(measured)), np.zeros(len(measured)), np.zeros(len(measured))
    steps: list[StepSummary] = []
    total_window = 0.0
    for step in run.steps:
        rows = [i for i, r in enumerate(measured) if r.step == step.step]
        loop_ms[rows] = loop_estimate_ms(step)
        wake_ms[rows] = step.wake_ns / 1e6
        ours = [measured[i] for i in rows]
        lateness[rows] = bounds.lateness_ms(ours, capped=step.mode != "concurrency" and bool(step.max_concurrency))
        estimates = bounds.Estimates(loop_ms[rows], wake_ms[rows])
        everything = [r for r in run.requests if r.step == step.step]
        window = window_s(step, frame.iloc[rows])
        total_window += window
        group = Group(frame.iloc[rows], ours, estimates, lateness[rows], window)
        settling = _settling(step, everything, windows[step.step])
        steps.append(cast(StepSummary, _step(step, everything, ours, group, slo) | settling))
    estimates = bounds.Estimates(loop_ms, wake_ms)
    overall = step_table(Group(frame, measured, estimates, lateness, total_window, None), slo)
    overall["throughput_bounds"] = _summed_bounds(steps, total_window)
    overall |= {"load": load_figures(run.steps), "offered": None, "service": service.overall(steps, measured)}
    summary = {
        "version": VERSION,
        "run_id": run.run.run_id,
        "started_at": run.run.started_at,
        "tool": run.run.tool,
        "target": run.run.target,
        "config": run.run.config,
        "slo": slo.as_dict() if slo is not None else None,
        "steps": steps,
        "overall": overall,
        "knee": knee(steps),
        "limit": None if concurrency_limit is None else limit_behaviour(steps, concurrency_limit, _keys(measured)),
        "timing_error_ms": timing_errors(measured, truth, estimates) if truth else None,
        "traffic": traffic(measured, run.run.config),
        "environment": cast(RunEnvironment, run.run.environment) if run.run.environment else None,
    }
    if server_metrics is not None:
        summary["server_metrics"] = _server(server.Scraped(server_metrics), run, steps, cast(Table, overall))
    return cast(Figures, summary)


def _server(scraped: server.Scraped, run: RunFile, steps: Sequence[StepSummary], overall: Table) -> Any:
    """The server's own view of each step and of the whole run, put beside the client's; what was scraped."""
    windows = server.windows(run.steps)
    for step in steps:
        step["server"] = server.figures(scraped, run.requests, [windows[step["step"]]], step["latency_ms"].get("ttft"))
    overall["server"] = server.figures(scraped, run.requests, list(windows.values()), overall["latency_ms"].get("ttft"))
    return server.summary(scraped)


def _step(
    step: StepInfo, everything: Sequence[Record], ours: Sequence[Record], group: Group, slo: Slo | None
) -> StepSummary:
    """One step's summary: what it was, its table, and the load, offered load and service beside it."""
    figures = offered(step, everything, ours)
    group = dataclasses.replace(group, load_error=None if figures is None else float(figures["relative_error"]))
    taken = {id(r) for r in ours}
    warm = [r for r in everything if id(r) not in taken]
    header = {
        "step": step.step,
        "label": step.label,
        "mode": step.mode,
        "concurrency": step.concurrency,
        "rate": step.rate,
        "rate_end": step.rate_end,
        "arrival": step.arrival,
        "burstiness": step.burstiness,
        "max_concurrency": step.max_concurrency,
        "warmup_requests": len(warm),
        "warmup_responses_429": sum(rejections(r) for r in warm),
        "warmup_errors": sum(1 for r in warm if r.error_kind not in (None, "rate_limited")),
    }
    extra = {"load": load_figures([step]), "offered": figures, "service": service.service(step, everything, ours)}
    return cast(StepSummary, header | step_table(group, slo) | extra)


def _settling(step: StepInfo, everything: Sequence[Record], window: steady.Window) -> dict[str, Any]:
    """Where the step's measurement started, whether its queue kept growing, and which repeat it belongs to."""
    finding = saturation.of_step(step, everything)
    stopped = step.saturated_ns is not None
    found = finding.as_dict() | {
        "saturated": True if stopped else finding.saturated,  # the live test found it on the step's first part
        "stopped": stopped,
        "stopped_at_s": _round((step.saturated_ns - step.started_ns) / 1e9) if step.saturated_ns is not None else None,
    }
    extra: dict[str, Any] = {"saturation": found, "steady_state": window.as_dict()}
    return extra | ({"repeat": step.repeat} if step.repeat is not None else {})


def _summed_bounds(steps: Sequence[Mapping[str, Any]], window_s: float) -> dict[str, float] | None:
    """A whole run's throughput bound: each step's, weighted by its window (the run's rate is their weighted sum)."""
    if window_s <= 0 or any(s["throughput_bounds"] is None for s in steps if s["window_s"] > 0):
        return None
    names = steps[0]["throughput"].keys() if steps else ()
    return {
        name: _round(sum(s["throughput_bounds"][name] * s["window_s"] for s in steps if s["window_s"] > 0) / window_s)
        for name in names
    }


def _keys(records: Sequence[Record]) -> int:
    return max(1, len({r.key for r in records}))


def _conformance(rd: RunDir) -> Conformance | None:
    result = rd.conformance
    if result is None:
        return None
    failures: list[Failure] = [
        {"nodeid": c["nodeid"], "group": c.get("group"), "outcome": c["outcome"], "message": c.get("message")}
        for c in result.get("checks", [])
        if c.get("outcome") in ("failed", "error")
    ]
    return {
        "passed": bool(result.get("passed")),
        "path": str(CONFORMANCE_RESULT),
        "summary": dict(result["summary"]),
        "failures": failures,
        "features": {name: found["status"] for name, found in (result.get("features") or {}).items()},
    }


def concurrency_limit(rd: RunDir) -> int | None:
    """The per-key limit of the target: as recorded with the run, else as the conformance suite checked it."""
    for source in (rd.run.run.target, (rd.conformance or {}).get("target") or {}):
        value = source.get("concurrency_limit")
        if isinstance(value, int):
            return value
    return None


def _kept_tolerances(previous: Mapping[str, Any] | None) -> validity.Tolerances:
    """The tolerances an earlier summary of the run was judged with (else the defaults)."""
    kept = ((previous or {}).get("validity") or {}).get("tolerances")
    return validity.Tolerances.from_dict(kept) if isinstance(kept, dict) else validity.Tolerances()


def schema_errors(summary: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schemas.load(SUMMARY_FILE))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(summary)]


def write_summary(directory: Path, summary: Summary) -> Path:
    """Write `summary.json` after checking it against its schema (ValueError when it does not match)."""
    problems = schema_errors(summary)
    if problems:
        raise ValueError(f"the summary does not match schemas/summary.json: {problems[:3]}")
    path = directory / SUMMARY_FILE
    path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def read_summary(path: Path) -> Summary:
    """A `summary.json` as written (ValueError when it is not a JSON object)."""
    value = orjson.loads(path.read_bytes())
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a summary (a JSON object)")
    return cast(Summary, value)
