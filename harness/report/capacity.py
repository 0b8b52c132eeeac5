"""What a report shows of a capacity search and of repeated runs: the trials in order, the answer with its interval,
and each headline figure across runs — as tables and lines, from the summary (`harness.analysis.capacity`,
`harness.analysis.repeats` made every value in them). The page (`harness.report.html`), the Markdown
(`harness.report.markdown`) and the terminal (`harness bench`) all take them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.analysis.capacity import UNITS, Trial, versus
from harness.analysis.shape import Capacity, Summary
from harness.load.search import SearchConfig
from harness.report.marks import saturation_mark
from harness.report.tables import Table, ms, num, pct

_OUTCOME = {True: "met", False: "failed", None: "not used"}


def search_line(search: SearchConfig) -> str:
    """What a search is about to do, in one line."""
    unit = UNITS[search.mode]
    return (
        f"capacity search: the largest {search.mode} meeting {search.objectives.describe()}; from {search.start:g} "
        f"{unit}, {search.trial_requests} measured requests per trial, to {search.precision:.0%}, at most "
        f"{search.max_trials} trials"
    )


def trial_printer(search: SearchConfig | None) -> Callable[[Trial], None] | None:
    """What `harness bench` prints as each trial is judged (None: not a search)."""
    if search is None:
        return None
    unit = UNITS[search.mode]
    return lambda trial: print(trial.describe(unit), flush=True)


def answer(found: Capacity) -> str:
    """The answer and its interval in one sentence."""
    interval = found["interval"]
    high = "∞" if interval["high"] is None else f"{interval['high']:g}"
    low = "0" if interval["low"] is None else f"{interval['low']:g}"
    trials = len(found["trials"])
    used = sum(1 for t in found["trials"] if t["used"])
    return (
        f"{found['message']}. Interval [{low}, {high}] {found['unit']} (the bracket widened by the trials' "
        f"uncertainty); {trials} trials, {used} used; status {found['status']}."
    )


def _figure(check: dict[str, Any] | None, name: str) -> str:
    if check is None or check["value"] is None:
        return "–"
    shown = pct if name == "goodput" else ms
    sign, note = versus(name, check["value"], check["limit"], check["met"])
    return f"{shown(check['value'])} {sign} {shown(check['limit'])}{note}"


def trials_table(summary: Summary) -> Table | None:
    """Every trial in order: its load, what it achieved, each objective's figure against its limit, the outcome."""
    found = summary.get("capacity")
    if not found:
        return None
    names = [*found["slo"]["percentiles"], *(["goodput"] if found["slo"]["per_request"] else [])]
    rows = []
    for t in found["trials"]:
        checks: dict[str, Any] = dict(t["objectives"])
        outcome = _OUTCOME[t["met"]] + ("" if not t["used"] or t["certain"] else " (not certain)")
        rows.append(
            [
                str(t["trial"] + 1),
                f"{t['load']:g}",
                num(t["achieved_rate"]),
                num(t["in_flight"]),
                str(t["requests"]),
                *(_figure(checks.get(n), n) for n in names),
                t["verdict"] + (" SATURATED" if t["saturated"] else ""),
                outcome,
            ]
        )
    headers = ["trial", f"load ({found['unit']})", "req/s sent", "in flight", "requests", *names, "verdict", "outcome"]
    return Table(headers, rows, [False, True, True, True, True, *(True for _ in names), False, False])


TRIALS_NOTE = (
    "Each trial is a step of the run, judged from its summary: each objective's figure against its limit (ms; goodput "
    "a share). Not used: INVALID (the client may have moved its numbers) in a way that could change the outcome, run "
    "again at the same load; an INVALID trial whose numbers out of tolerance could not change it is used. A SATURATED "
    "trial fails whatever its percentiles say. Not certain: a one-sided 95% confidence bound of some objective lies "
    "on the other side of its limit. The interval widens the bracket to the trials whose verdicts were certain."
)


def capacity_lines(summary: Summary) -> list[str]:
    """The search's answer for the terminal, after the step table."""
    found = summary.get("capacity")
    return [] if not found else ["", f"capacity: {answer(found)}"]


def windows_table(summary: Summary) -> Table | None:
    """Per step: where its measurement started (fixed or found), and whether its queue kept growing."""
    steps = [s for s in summary["steps"] if s.get("steady_state") or s.get("saturation")]
    if not steps:
        return None
    rows = []
    for s in steps:
        window = s.get("steady_state")
        found = s.get("saturation")
        rows.append(
            [
                s["label"],
                "–" if window is None else window["method"],
                "–" if window is None else f"{window['warmup_s']:.2f}",
                "–" if window is None else str(window["warmup_requests"]),
                "–" if found is None or found["saturated"] is None else saturation_mark(s) or "no",
                "–" if found is None or found["in_flight"] is None else f"{found['in_flight']['rise']:+.3g}",
                "–" if found is None or found["ttft_ms"] is None else f"{found['ttft_ms']['rise']:+,.4g}",
            ]
        )
    headers = ["step", "warm-up", "measured from (s)", "warm-up requests", "saturated", "in-flight rise", "TTFT rise"]
    return Table(headers, rows, [False, False, True, True, False, True, True])


WINDOWS_NOTE = (
    "Warm-up: fixed, or mser5 where MSER-5 found the step's steady state (--warmup auto); measured from: seconds after "
    "the step's start. Saturated: in flight and TTFT both rose significantly (Mann–Kendall, p < 0.01) and by at least "
    "half their level over the step (rises along the Theil–Sen line, TTFT in ms); – when the step was too short "
    "to judge."
)


def repeats_table(summary: Summary) -> Table | None:
    """Each step's headline figures across the runs: mean and the confidence interval of the mean."""
    found = summary.get("repeats")
    if not found:
        return None
    rows = []
    for step in found["steps"]:
        for name, spread in step["metrics"].items():
            low, high = spread["low"], spread["high"]
            interval = "–" if low is None or high is None else f"[{low:,.4g}, {high:,.4g}]"
            values = ", ".join(f"{v:,.4g}" for v in spread["values"])
            rows.append([step["label"], name, f"{spread['mean']:,.4g}", interval, values])
    confidence = f"{found['confidence']:.0%}"
    return Table(["step", "figure", "mean", f"{confidence} interval", f"each of {found['runs']} runs"], rows,
                 [False, False, True, True, False])  # fmt: skip
