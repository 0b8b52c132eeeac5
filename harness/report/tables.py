"""The report's tables, as rows of formatted cells, from summaries (`harness.analysis` made every value in
them).

One definition per table serves both renderings, HTML (`harness.report.html`) and Markdown (`harness.commands.report`),
so that the pull-request comment and the page can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis import validity
from harness.analysis.shape import Stat, StepSummary, Summary, TimingError
from harness.analysis.shape import Table as Figures
from harness.report.marks import saturation_mark


@dataclass(frozen=True, slots=True)
class Table:
    """Formatted cells; `numeric` says which columns are right-aligned (by default all but the first)."""

    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool] | None = None

    def right(self, column: int) -> bool:
        return self.numeric[column] if self.numeric is not None else column > 0


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}" if value else "0%"


def num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _lat(table: Figures, name: str, q: Stat) -> float | None:
    value: float | None = table["latency_ms"][name][q]
    return value


def plus_minus(bound: float | None) -> str:
    """A bound as the tables show it: two significant digits, never rounded to zero."""
    if bound is None:
        return ""
    if bound == 0:
        return "±0"
    return f"±{bound:.2g}" if bound < 100 else f"±{bound:,.0f}"


def _bounded(table: Figures, name: str, q: Stat) -> str:
    """A latency statistic with the client's bound beside it, when the summary has bounds."""
    dist = table["latency_ms"][name]
    bound = (dist.get("bounds") or {}).get(q)
    value = ms(dist[q])
    return value if bound is None or dist[q] is None else f"{value} {plus_minus(bound)}"


# Per-step columns: header, cell from a step (or overall) table.
_STEP_COLUMNS: list[tuple[str, Callable[[Figures], str]]] = [
    ("ok/total", lambda t: f"{t['requests']['ok']}/{t['requests']['total']}"),
    ("errors", lambda t: pct(t["rates"]["error"])),
    ("429s", lambda t: str(t.get("responses_429", t["requests"]["rate_limited"]))),
    ("req/s", lambda t: num(t["throughput"]["requests_per_s"])),
    ("out tok/s", lambda t: num(t["throughput"]["output_tokens_per_s"], 0)),
    ("TTFT p50", lambda t: _bounded(t, "ttft", "p50")),
    ("TTFT p99", lambda t: _bounded(t, "ttft", "p99")),
    ("ITL p50", lambda t: _bounded(t, "itl", "p50")),
    ("ITL p99", lambda t: _bounded(t, "itl", "p99")),
    ("TPOT p50", lambda t: _bounded(t, "tpot", "p50")),
    ("E2E p50", lambda t: _bounded(t, "e2e", "p50")),
    ("E2E p99", lambda t: _bounded(t, "e2e", "p99")),
    ("E2E* p99", lambda t: _bounded(t, "e2e_from_scheduled", "p99")),
    ("goodput", lambda t: pct(t["goodput_fraction"])),
]
STEP_NOTE = (
    "Latencies in ms over successful measured requests, each ± how far the client itself may have moved it; TTFT "
    "counts the first token of any kind, TTFO (when a model reasoned) the first token of the answer; E2E* is "
    "measured from the scheduled time (client queueing and 429 retries included); 429s counts every 429 response "
    "the measured requests met, a request that was still retrying when the window opened included (the limit "
    "section counts warm-up requests too)."
)


# Shown only when a step has them: TTFO differs from TTFT only for reasoning models, and answers are checked only
# under --response-format or --tools.
_REASONING_COLUMNS: list[tuple[str, Callable[[Figures], str]]] = [
    ("TTFO p50", lambda t: _bounded(t, "ttfo", "p50") if "ttfo" in t["latency_ms"] else "–"),
    ("TTFO p99", lambda t: _bounded(t, "ttfo", "p99") if "ttfo" in t["latency_ms"] else "–"),
]
_OUTPUT_COLUMNS: list[tuple[str, Callable[[Figures], str]]] = [
    ("output errors", lambda t: pct(t["rates"].get("output_error"))),
]


def step_columns(summary: Summary) -> list[tuple[str, Callable[[Figures], str]]]:
    """The per-step columns this summary has values for."""
    tables = [*summary["steps"], summary["overall"]]
    columns = list(_STEP_COLUMNS)
    if any("ttfo" in t["latency_ms"] for t in tables):
        at = next(i for i, (name, _) in enumerate(columns) if name == "TTFT p99") + 1
        columns[at:at] = _REASONING_COLUMNS
    if any(t["rates"].get("output_error") is not None for t in tables):
        columns[-1:-1] = _OUTPUT_COLUMNS
    return columns


def steps_table(summary: Summary) -> Table:
    """One row per load step and one for the whole run."""
    columns = step_columns(summary)
    headers = ["step", *(name for name, _ in columns), "verdict"]
    rows = []
    for step in summary["steps"]:
        cells = [cell(step) for _, cell in columns]
        verdict = step.get("validity", {}).get("verdict", "–")
        rows.append([step["label"], *cells, " ".join(filter(None, (verdict, saturation_mark(step))))])
    overall = summary["overall"]
    rows.append(["all", *(cell(overall) for _, cell in columns), summary["validity"]["verdict"]])
    return Table(headers, rows)


def target_table(summary: Summary) -> Table:
    """What was measured, and how: the target and the run's configuration."""
    target = summary["target"]
    config = summary["config"]
    rows = [
        ["target", str(target.get("description") or target.get("base_url", "–"))],
        ["base URL", str(target.get("base_url", "–"))],
        ["model", str(target.get("model", "–"))],
        ["profile / endpoint", f"{target.get('profile', '–')} / {target.get('endpoint', '–')}"],
        ["API keys", ", ".join(map(str, target.get("keys", []))) or "–"],
        ["run", f"{summary['run_id']} ({summary['tool']}, started {summary['started_at']})"],
        ["steps", ", ".join(map(str, config.get("steps", []))) or "–"],
        ["per step", f"warm-up {config.get('warmup_s', '–')} s, then {_extent(config)}"],
        ["prompts", _prompts(config.get("prompts") or {})],
        ["on 429", str(config.get("on_429", "–"))],
        ["preflight", _preflight(config.get("preflight"))],
        ["SLO", ", ".join(f"{k} ≤ {v:g}" for k, v in (summary.get("slo") or {}).items()) or "none"],
        ["records", ", ".join(summary.get("sources", [])) or "–"],
    ]
    return Table(["", ""], rows, [False, False])


def _extent(config: Mapping[str, Any]) -> str:
    if config.get("requests"):
        return f"{config['requests']} requests"
    return f"{config['duration_s']} s" if config.get("duration_s") is not None else "–"


def _preflight(found: Mapping[str, Any] | None) -> str:
    """What the checks before the run found: its notices (a /v1 added, extension fields refused), or that all passed."""
    if not found:
        return "–"
    return "; ".join(map(str, found.get("notices") or [])) or "passed"


def _prompts(prompts: Mapping[str, Any]) -> str:
    if not prompts:
        return "–"
    parts = [str(prompts.get("source"))]
    if prompts.get("input_tokens"):
        parts.append(f"input {prompts['input_tokens']} tokens")
    if prompts.get("output_tokens"):
        parts.append(f"output {prompts['output_tokens']} tokens")
    return ", ".join(parts)


def limit_table(summary: Summary) -> Table | None:
    limit = summary.get("limit")
    if not limit:
        return None
    side = {"at_or_below": "at or below", "above": "above", "not_judged": "not judged"}
    yes_no = {True: "yes", False: "NO", None: "–"}
    rows = [
        [
            s["label"],
            side[s["side"]],
            str(s["responses_429"]),
            str(s["errors"]),
            yes_no[s["honoured"]],
            _count(s.get("starved_users")),
            ms(s.get("wait_for_service_p99_ms")),
            ms(s.get("wait_for_service_max_ms")),
            _count(s.get("unserved_at_end")),
            num(s.get("fairness_users"), 3),
        ]
        for s in limit["steps"]
    ]
    headers = ["step", "vs limit", "429s", "errors", "as expected", "users starved", "wait p99", "wait max",
               "unserved at end", "users' fairness"]  # fmt: skip
    return Table(headers, rows, [False, False, True, True, False, True, True, True, True, True])


LIMIT_NOTE = (
    "Users starved: closed-loop users with no successful response while the step sent; wait: from a request's "
    "schedule to the send the endpoint admitted, 429 retries included (ms); unserved at end: requests still not "
    "admitted when the step stopped sending; users' fairness: Jain's index of the requests each user completed."
)


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


_METRICS = (
    ("TTFT", "ttft"),
    ("ITL", "itl"),
    ("TPOT", "tpot"),
    ("E2E", "e2e"),
    ("E2E from schedule", "e2e_from_scheduled"),
)
_SHOWN: tuple[Stat, ...] = ("mean", "p50", "p90", "p99", "p99_9", "max")


def bounds_table(step: StepSummary, tolerances: Mapping[str, Any] | None) -> Table | None:
    """One step's latencies, each statistic ± its bound, marked ✗ where the bound is over its tolerance."""
    if not any((step["latency_ms"][key].get("bounds") for _, key in _METRICS)):
        return None
    rows = []
    for name, key in _METRICS:
        dist = step["latency_ms"][key]
        limits, causes = dist.get("bounds") or {}, dist.get("causes") or {}
        tol = (tolerances or {}).get(key) or {"abs_ms": 1.0, "rel": 0.01}
        cells = []
        for q in _SHOWN:
            value, bound = dist[q], limits.get(q)
            if value is None or bound is None:
                cells.append("–")
                continue
            judged = q != "min" and not validity.is_extreme(q, int(dist.get("count") or 0))
            over = judged and bound > max(tol["abs_ms"], tol["rel"] * abs(value))
            cells.append(f"{ms(value)} {plus_minus(bound)}" + (" ✗" if over else ""))
        worst = max((q for q in _SHOWN if limits.get(q) is not None), key=lambda q: limits.get(q) or 0.0, default=None)
        rows.append([name, *cells, str(causes.get(worst) or "–") if worst else "–"])
    return Table(["ms", *(q.replace("_", ".") for q in _SHOWN), "largest cause"], rows)


def load_line(step: StepSummary) -> str | None:
    """The load the client offered against the load asked, and the throughput's bound, in one line."""
    offered = step.get("offered")
    if not offered:
        return None
    if offered["mode"] == "concurrency":
        load = (
            f"{offered['value']:.2f} users in flight on average of {offered['asked']:g} asked "
            f"(idle {offered['relative_error']:.2%} of the time between requests)"
        )
    else:
        load = (
            f"{offered['value']:.3g} req/s sent of {offered['asked']:.3g} req/s due "
            f"({offered['relative_error']:.2%} off)"
        )
    bounds = step.get("throughput_bounds") or {}
    tokens = bounds.get("output_tokens_per_s")
    extra = "" if tokens is None else f"; output tokens/s {plus_minus(tokens)}"
    return f"load offered: {load}{extra}"


def truth_table(summary: Summary) -> Table | None:
    """Measured statistics against the ground truth's over the same requests, with the bound and whether it held."""
    errors = summary.get("timing_error_ms")
    cells = errors.get("cells") if errors else None
    if not cells:
        return None
    rows = []
    for name, key in _METRICS[:4]:
        for q in ("p50", "p99", "p99_9", "max"):
            cell = cells.get(key, {}).get(q)
            if cell is None:
                continue
            held = "yes" if cell["covered"] else "NO"
            own = cell.get("true_bound")
            rows.append([f"{name} {q.replace('_', '.')}", ms(cell["measured"]), ms(cell["true"]),
                         f"{cell['error']:.3f}", f"{cell['bound']:.3f}", "–" if own is None else f"{own:.3f}",
                         held])  # fmt: skip
    return Table(["statistic", "measured", "true", "|difference|", "bound", "truth's own", "bounds hold"], rows,
                 [False, True, True, True, True, True, False])  # fmt: skip


def conformance_table(summary: Summary) -> Table | None:
    conformance = summary.get("conformance")
    if not conformance:
        return None
    counts = conformance["summary"]
    headers = ["total", "passed", "failed", "error", "skipped", "not run"]
    row = [str(counts[k]) for k in ("total", "passed", "failed", "error", "skipped", "not_run")]
    return Table(headers, [row], [True] * len(headers))


def timing_table(summary: Summary) -> Table | None:
    errors = summary.get("timing_error_ms")
    if not errors:
        return None
    rows = [
        [name, str(dist["count"]), ms(dist["p50"]), ms(dist["p99"]), ms(dist["max"])]
        for name, dist in (("TTFT (per request)", errors["ttft"]), ("ITL (per gap)", errors["itl"]))
    ]
    return Table(["|measured − true|, ms", "samples", "p50", "p99", "max"], rows)


def arrival_stamps(errors: TimingError) -> tuple[str, bool]:
    """Whose clock took the server's arrivals behind a timing error, in words; True when that is a warning.

    A ground-truth TTFT starts at the server's arrival stamp: one its event loop took is late by however long the
    server was busy, and that lateness then counts as the harness's error.
    """
    by = errors.get("received_by")  # summaries from before it was counted do not say
    kernel, loop = (by["kernel"], by["loop"]) if by else (0, 0)
    matched = errors["matched"]
    if loop:
        share = "" if loop == matched else f" for {loop} of {matched} requests"
        return (
            f"the server's arrivals were taken by its event loop{share}: TTFT error includes the server's own lateness",
            True,
        )
    if kernel and kernel == matched:
        return "server arrival stamped by the kernel", False
    if kernel:
        return f"server arrival stamped by the kernel for {kernel} of {matched} requests (the rest did not say)", False
    return "the server did not say whose clock took its arrivals", False


# Rows of the side-by-side comparison: name, value from a summary, format.
_COMPARED: list[tuple[str, Callable[[Summary], float | None], Callable[[float | None], str]]] = [
    ("requests ok", lambda s: s["overall"]["requests"]["ok"], lambda v: num(v, 0)),
    ("error rate", lambda s: s["overall"]["rates"]["error"], pct),
    ("429 responses", lambda s: s["overall"].get("responses_429"), lambda v: num(v, 0)),
    ("requests/s", lambda s: s["overall"]["throughput"]["requests_per_s"], num),
    ("output tokens/s", lambda s: s["overall"]["throughput"]["output_tokens_per_s"], lambda v: num(v, 0)),
    ("TTFT p50 (ms)", lambda s: _lat(s["overall"], "ttft", "p50"), ms),
    ("TTFT p99 (ms)", lambda s: _lat(s["overall"], "ttft", "p99"), ms),
    ("ITL p50 (ms)", lambda s: _lat(s["overall"], "itl", "p50"), ms),
    ("ITL p99 (ms)", lambda s: _lat(s["overall"], "itl", "p99"), ms),
    ("TPOT p50 (ms)", lambda s: _lat(s["overall"], "tpot", "p50"), ms),
    ("E2E p50 (ms)", lambda s: _lat(s["overall"], "e2e", "p50"), ms),
    ("E2E p99 (ms)", lambda s: _lat(s["overall"], "e2e", "p99"), ms),
    ("knee (load)", lambda s: knee["load"] if (knee := s.get("knee")) else None, lambda v: num(v, 0)),
]


def _delta(base: float | None, value: float | None) -> str:
    if base is None or value is None or base == 0:
        return "–"
    return f"{(value - base) / base:+.1%}"


def comparison_table(summaries: Sequence[Summary], labels: Sequence[str]) -> Table:
    """The runs side by side over all their measured requests, with each run's change against the first."""
    headers = ["", *labels, *(f"Δ {label}" for label in labels[1:])]
    rows = []
    for name, value, fmt in _COMPARED:
        values = [value(s) for s in summaries]
        rows.append([name, *(fmt(v) for v in values), *(_delta(values[0], v) for v in values[1:])])
    rows.append(["verdict", *(s["validity"]["verdict"] for s in summaries), *("" for _ in labels[1:])])
    rows.append(["conformance", *(_conformance_cell(s) for s in summaries), *("" for _ in labels[1:])])
    rows.append(["limit honoured", *(_limit_cell(s) for s in summaries), *("" for _ in labels[1:])])
    return Table(headers, rows)


def steps_comparison_table(summaries: Sequence[Summary], labels: Sequence[str]) -> Table:
    """Output tokens/s and TTFT/E2E p99 per step, one column per run."""
    order: list[str] = []
    for s in summaries:
        order += [step["label"] for step in s["steps"] if step["label"] not in order]
    columns: list[tuple[str, Callable[[Figures], str]]] = [
        ("tok/s", lambda t: num(t["throughput"]["output_tokens_per_s"], 0)),
        ("TTFT p99", lambda t: ms(_lat(t, "ttft", "p99"))),
        ("E2E p99", lambda t: ms(_lat(t, "e2e", "p99"))),
    ]
    headers = ["step", *(f"{name} {label}" for name, _ in columns for label in labels)]
    rows = []
    for label in order:
        found = [next((t for t in s["steps"] if t["label"] == label), None) for s in summaries]
        rows.append([label, *(cell(t) if t is not None else "–" for _, cell in columns for t in found)])
    return Table(headers, rows)


def _conformance_cell(summary: Summary) -> str:
    c = summary.get("conformance")
    if not c:
        return "not run"
    counts = c["summary"]
    return f"{counts['passed']}/{counts['total']} passed" + ("" if c["passed"] else " (FAILED)")


def _limit_cell(summary: Summary) -> str:
    limit = summary.get("limit")
    return "–" if not limit else "yes" if limit["honoured"] else "NO"
