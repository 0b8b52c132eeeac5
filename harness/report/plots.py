"""The report's figures as PNG bytes, drawn with matplotlib's object API (Agg; no pyplot, no global state).

Every value drawn comes from `harness.analysis` — per-request samples, the timeline, the summaries' step tables
— so that a figure and the table beside it cannot disagree. Several runs are overlaid in one figure where that
compares them (CDFs, the sweep, lengths); timelines are one per run.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from harness.analysis.shape import Capacity, Stat, StepSummary, Summary
from harness.records.record import StepInfo

Floats = npt.NDArray[np.float64]
Samples = Mapping[str, Floats]
LIMIT_COLOR = "#c0392b"
KNEE_STYLE: dict[str, Any] = {"linestyle": ":", "linewidth": 1.5}
_DPI = 100


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def _ecdf(ax: Axes, values: Floats, label: str) -> bool:
    if values.size == 0:
        return False
    x = np.sort(values)
    y = np.arange(1, x.size + 1) / x.size
    ax.step(np.concatenate(([x[0]], x)), np.concatenate(([0.0], y)), where="post", label=f"{label} (n={x.size:,})")
    return True


def cdfs(runs: Sequence[tuple[str, Samples]]) -> bytes:
    """Empirical CDFs of TTFT, ITL and E2E latency, one line per run."""
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (key, title) in zip(
        axes, (("ttft", "TTFT"), ("itl", "ITL (per token)"), ("e2e", "E2E latency")), strict=True
    ):
        drawn = [_ecdf(ax, samples[key], label) for label, samples in runs]
        if not any(drawn):
            _empty(ax, "no samples")
            ax.set_title(title)
            continue
        values = np.concatenate([s[key] for _, s in runs if s[key].size])
        low, high = float(values.min()), float(values.max())
        if low > 0 and high / low > 30:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        for q in (0.5, 0.9, 0.99):
            ax.axhline(q, color="#bbb", linewidth=0.7, linestyle="--")
        ax.set_ylim(0, 1.01)
        ax.set_title(title)
        ax.set_xlabel("ms")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    axes[0].set_ylabel("fraction of requests (ITL: of tokens)")
    fig.suptitle("Latency CDFs (successful measured requests; dashed: p50, p90, p99)")
    return png(fig)


def _levels(summary: Summary) -> tuple[str, list[tuple[float, StepSummary]]]:
    steps = summary["steps"]
    modes = {s["mode"] for s in steps}
    if modes == {"concurrency"}:
        points = [(float(s["concurrency"]), s) for s in steps if s["concurrency"] is not None]
        return "concurrency (users)", sorted(points, key=lambda p: p[0])
    if modes == {"rate"}:
        points = [(float(s["rate"]), s) for s in steps if s["rate"] is not None]
        return "request rate (req/s)", sorted(points, key=lambda p: p[0])
    return "", []


def sweep(runs: Sequence[tuple[str, Summary]]) -> bytes | None:
    """Throughput and p50/p99 latency against concurrency or rate, with the knee and the concurrency limit marked.

    None when no run has two load levels of one mode to draw.
    """
    drawable = [(label, *_levels(s), s) for label, s in runs]
    drawable = [d for d in drawable if len(d[2]) >= 2]
    if not drawable:
        return None
    fig = Figure(figsize=(13, 4.2))
    throughput, latency = fig.subplots(1, 2)
    colors = [f"C{i}" for i in range(len(drawable))]
    for color, (label, xlabel, points, summary) in zip(colors, drawable, strict=True):
        x = [p for p, _ in points]
        tps = [s["throughput"]["output_tokens_per_s"] for _, s in points]
        throughput.plot(x, tps, "o-", color=color, label=f"{label} output tokens/s")
        for name, marker in (("ttft", "s"), ("e2e", "o")):
            for q, style in (("p50", "-"), ("p99", "--")):
                stat: Stat = "p50" if q == "p50" else "p99"
                values = [s["latency_ms"][name][stat] for _, s in points]
                y = [np.nan if v is None else v for v in values]
                latency.plot(x, y, marker=marker, linestyle=style, color=color, label=f"{label} {name.upper()} {q}")
        knee = summary.get("knee")
        if knee:
            for ax in (throughput, latency):
                ax.axvline(knee["load"], color=color, **KNEE_STYLE)
            throughput.annotate(
                f"knee {knee['load']:g}",
                (knee["load"], knee["output_tokens_per_s"]),
                textcoords="offset points",
                xytext=(-8, -16),
                ha="right",
                color=color,
            )
        for ax in (throughput, latency):
            ax.set_xlabel(xlabel)
    limit = next((found["concurrency_limit"] for _, _, _, s in drawable if (found := s.get("limit"))), None)
    if limit is not None:
        for ax in (throughput, latency):
            ax.axvline(limit, color=LIMIT_COLOR, linestyle="--", linewidth=1.2)
            ax.axvspan(limit, ax.get_xlim()[1], color=LIMIT_COLOR, alpha=0.06)
            ax.text(limit, 0.98, f" limit {limit}/key", color=LIMIT_COLOR, transform=ax.get_xaxis_transform(), va="top")
    throughput.set_ylabel("output tokens/s")
    throughput.set_ylim(bottom=0)
    throughput.set_title("Throughput")
    latency.set_ylabel("ms")
    latency.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    latency.yaxis.set_major_formatter(plain)
    latency.yaxis.set_minor_formatter(plain)
    latency.tick_params(axis="y", which="minor", labelsize=7)
    latency.set_title("Latency (solid p50, dashed p99)")
    for ax in (throughput, latency):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    fig.suptitle("Load sweep (dotted: the knee; shaded: above the concurrency limit)")
    return png(fig)


def timeline(frame: pd.DataFrame, steps: Sequence[StepInfo], limit: int | None, title: str) -> bytes:
    """Requests in flight, output tokens/s, and 429s and errors per second over the run, steps marked."""
    fig = Figure(figsize=(13, 6.6))
    flight, tokens, failures = fig.subplots(3, 1, sharex=True)
    t = frame["t_s"].to_numpy()
    width = float(t[1] - t[0]) if len(t) > 1 else 1.0
    centers = t + width / 2
    flight.plot(centers, frame["in_flight"], color="C0")
    flight.set_ylabel("in flight")
    if limit is not None:
        flight.axhline(limit, color=LIMIT_COLOR, linestyle="--", linewidth=1.2, label=f"limit {limit}/key")
        flight.legend(fontsize="small", loc="upper left")
    tokens.plot(centers, frame["output_tokens_per_s"], color="C2")
    tokens.set_ylabel("output tokens/s")
    failures.bar(t, frame["responses_429_per_s"], width=width, align="edge", color="C1", label="429s/s")
    failures.bar(
        t,
        frame["errors_per_s"],
        width=width,
        align="edge",
        bottom=frame["responses_429_per_s"],
        color=LIMIT_COLOR,
        label="errors/s",
    )
    failures.set_ylabel("per second")
    failures.set_xlabel("seconds since the run started")
    failures.legend(fontsize="small", loc="upper left")
    for ax in (flight, tokens, failures):
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        for step in steps:
            ax.axvspan(step.started_ns / 1e9, step.measure_start_ns / 1e9, color="#999", alpha=0.15, linewidth=0)
            ax.axvline(step.started_ns / 1e9, color="#666", linewidth=0.8)
    for step in steps:
        flight.text(step.started_ns / 1e9, 1.02, f" {step.label}", transform=flight.get_xaxis_transform(), fontsize=8)
    fig.suptitle(f"{title}: timeline (grey: warm-up, not measured)", y=1.01)
    return png(fig)


def lengths(runs: Sequence[tuple[str, Samples]]) -> bytes:
    """Histograms of prompt and output lengths in tokens (as the target's usage reported them)."""
    fig = Figure(figsize=(13, 3.4))
    axes = fig.subplots(1, 2)
    for ax, (key, title) in zip(axes, (("prompt_tokens", "Prompt"), ("completion_tokens", "Output")), strict=True):
        present = [(label, s[key]) for label, s in runs if s[key].size]
        if not present:
            _empty(ax, "no usage reported")
            ax.set_title(f"{title} length")
            continue
        values = np.concatenate([v for _, v in present])
        low, high = float(values.min()), float(values.max())
        bins = np.arange(low - 0.5, high + 1.5) if high - low < 60 else np.linspace(low, high, 50)
        for label, v in present:
            ax.hist(v, bins=bins, alpha=0.6 if len(present) > 1 else 0.9, label=f"{label} (n={v.size:,})")
        ax.set_title(f"{title} length")
        if high - low < 12:
            ax.set_xticks(np.arange(int(low), int(high) + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("tokens")
        ax.set_ylabel("requests")
        ax.legend(fontsize="small")
        ax.grid(True, alpha=0.3)
    return png(fig)


_OUTCOME_COLORS = {True: "C2", False: LIMIT_COLOR, None: "#999"}


def _answer_at(found: Capacity, load: float | None) -> float | None:
    """The rate a trial at this load sent: where a load of the search lies on a throughput axis."""
    trial = next((t for t in found["trials"] if t["load"] == load and t["achieved_rate"] is not None), None)
    return None if trial is None else trial["achieved_rate"]


def capacity(found: Capacity, title: str) -> bytes:
    """Every trial of a search on its latency–throughput curve, one panel per objective: the trials in order
    (numbered, joined), met (green), failed (red, a cross when SATURATED) or not used (grey); the objective's limit;
    the answer (solid) and its interval (shaded)."""
    names = [*found["slo"]["percentiles"], *(["goodput"] if found["slo"]["per_request"] else [])]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)[0]
    trials = [t for t in found["trials"] if t["achieved_rate"] is not None]
    answer = _answer_at(found, found["answer"])
    low, high = _answer_at(found, found["interval"]["low"]), _answer_at(found, found["interval"]["high"])
    for ax, name in zip(axes, names, strict=False):
        points = [(t, check) for t in trials if (check := t["objectives"].get(name)) and check["value"] is not None]
        if not points:
            _empty(ax, "no value")
            continue
        x = [t["achieved_rate"] for t, _ in points]
        y = [c["value"] for _, c in points]
        ax.plot(x, y, color="#bbb", linewidth=0.8, zorder=1)
        for (t, _), xi, yi in zip(points, x, y, strict=True):
            ax.scatter([xi], [yi], color=_OUTCOME_COLORS[t["met"]], marker="x" if t["saturated"] else "o", zorder=2)
            ax.annotate(str(t["trial"] + 1), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.axhline(points[0][1]["limit"], color=LIMIT_COLOR, linestyle="--", linewidth=1.2, label="objective")
        if answer is not None:
            ax.axvline(answer, color="C0", linewidth=1.5, label=f"answer {found['answer']:g} {found['unit']}")
            ax.axvspan(low if low is not None else ax.get_xlim()[0], high if high is not None else ax.get_xlim()[1],
                       color="C0", alpha=0.08, label="interval")  # fmt: skip
        ax.set_title(name.replace("_ms", " (ms)").replace("_", " "))
        ax.set_xlabel("requests/s sent")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper left")
    fig.suptitle(f"{title}: capacity search, trials in order (green: met, red: failed, x: SATURATED, grey: not used)")
    return png(fig)
