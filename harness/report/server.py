"""The report's "Server" section: the server's own view of each step, from its Prometheus metrics, beside the
client's — tables from the summary (`harness.analysis.server` computed every value) and a timeline figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness.analysis.shape import ServerDistribution, ServerGauge, ServerStep, Summary
from harness.records.record import StepInfo
from harness.report.plots import LIMIT_COLOR, png
from harness.report.tables import Table, ms, num, pct

NOTE = (
    "From the target's own Prometheus metrics, scraped during the run, over each step's measurement window (between "
    "the scrapes nearest its ends), beside the client's figures over the same span. A server percentile is "
    "interpolated inside its histogram bucket, as Prometheus does, and shown with that bucket: the truth may lie "
    "anywhere in it; means are exact. The gap (the client's TTFT less the server's) is what lies outside the "
    "server's clock — the network, the front end, the client —, each percentile's with the range its bucket allows."
)
_Cell = Callable[[ServerStep], str]


def _gauge(g: ServerGauge | None, fmt: Callable[[float], str]) -> str:
    return "–" if g is None else f"{fmt(g['mean'])} / {fmt(g['max'])}"


def _count(value: float) -> str:
    return f"{value:,.1f}"


def _stat(d: ServerDistribution | None, q: str) -> str:
    """A server statistic; a percentile with the bucket it lies in (interpolated, as Prometheus does)."""
    value = None if d is None else d.get(q)
    if d is None or not isinstance(value, int | float):
        return "–"
    bucket = d["buckets"].get(q)
    if bucket is None:
        return ms(value)
    low, high = bucket
    return f"{ms(value)} ({ms(low)}–{'∞' if high is None else ms(high)})"


def _mean_gap(s: ServerStep) -> str:
    gap = s["ttft_gap_ms"]
    return "–" if gap is None else ms(gap["mean"])


def _gap(s: ServerStep, q: str) -> str:
    gap = s["ttft_gap_ms"]
    value = None if gap is None else gap.get(q)
    if gap is None or not isinstance(value, int | float):
        return "–"
    low, high = gap["ranges"].get(q, [None, None])
    lower = "−∞" if low is None else f"{low:,.1f}"
    return f"{value:,.1f} ({lower}…{'∞' if high is None else f'{high:,.1f}'})"


def _pair(a: str, b: str) -> str:
    return f"{a} / {b}"


_LOAD: list[tuple[str, _Cell]] = [
    ("client in flight", lambda s: num(s["client_in_flight"], 1)),
    ("running mean / max", lambda s: _gauge(s["running"], _count)),
    ("waiting mean / max", lambda s: _gauge(s["waiting"], _count)),
    ("KV cache mean / max", lambda s: _gauge(s["kv_cache_usage"], pct)),
    ("prefix-cache hits", lambda s: pct(s["prefix_cache_hit_rate"])),
    ("preemptions", lambda s: num(s["preemptions"], 0)),
    (
        "out tok/s server / client",
        lambda s: _pair(num(s["generation_tokens_per_s"], 0), num(s["client_output_tokens_per_s"], 0)),
    ),
]
_LATENCY: list[tuple[str, _Cell]] = [
    ("server TTFT mean", lambda s: _stat(s["ttft_ms"], "mean")),
    ("server TTFT p50", lambda s: _stat(s["ttft_ms"], "p50")),
    ("server TTFT p99", lambda s: _stat(s["ttft_ms"], "p99")),
    ("gap mean", _mean_gap),
    ("gap p50", lambda s: _gap(s, "p50")),
    ("gap p99", lambda s: _gap(s, "p99")),
    ("queue mean", lambda s: _stat(s["queue_time_ms"], "mean")),
    ("queue p99", lambda s: _stat(s["queue_time_ms"], "p99")),
    ("server E2E p50", lambda s: _stat(s["e2e_ms"], "p50")),
]


def _rows(summary: Summary, columns: Sequence[tuple[str, _Cell]]) -> list[list[str]]:
    rows = []
    for step in summary["steps"]:
        found = step.get("server")
        rows.append([step["label"], *(cell(found) if found else "–" for _, cell in columns)])
    overall = summary["overall"].get("server")
    if overall:
        rows.append(["all", *(cell(overall) for _, cell in columns)])
    return rows


def load_table(summary: Summary) -> Table | None:
    """Per step: the server's requests, caches and token rate against the client's."""
    if not summary.get("server_metrics"):
        return None
    return Table(["step", *(name for name, _ in _LOAD)], _rows(summary, _LOAD))


def latency_table(summary: Summary) -> Table | None:
    """Per step: the server's TTFT, queue time and E2E percentiles beside the client's TTFT, and their gap."""
    if not summary.get("server_metrics"):
        return None
    rows = _rows(summary, _LATENCY)
    client = [step["latency_ms"]["ttft"] for step in summary["steps"]]
    if summary["overall"].get("server"):
        client.append(summary["overall"]["latency_ms"]["ttft"])
    for row, ttft in zip(rows, client, strict=True):
        row[1:1] = [ms(ttft["mean"]), ms(ttft["p50"]), ms(ttft["p99"])]
    headers = ["step (ms)", "client TTFT mean", "client TTFT p50", "client TTFT p99", *(name for name, _ in _LATENCY)]
    return Table(headers, rows)


def sources_line(summary: Summary) -> str | None:
    """Where the metrics came from, how the scraping went, and which family gave each figure."""
    found = summary.get("server_metrics")
    if not found:
        notice = (summary["config"].get("server_metrics") or {}).get("notice")
        return str(notice) if notice else None
    failed = f", {found['failed']} failed (first: {found['first_error']})" if found["failed"] else ""
    sources = ", ".join(f"{name} ← {family}" for name, family in sorted(found["sources"].items())) or "none known"
    return (
        f"{found['scrapes']} scrapes of {found['url']} every {found['interval_s']:g} s{failed}; "
        f"{found['families']} metric families; read: {sources}"
    )


def _mark_steps(ax: Axes, steps: Sequence[StepInfo]) -> None:
    for step in steps:
        ax.axvspan(step.started_ns / 1e9, step.measure_start_ns / 1e9, color="#999", alpha=0.15, linewidth=0)
        ax.axvline(step.started_ns / 1e9, color="#666", linewidth=0.8)


def _plot(ax: Axes, frame: pd.DataFrame, column: str, label: str, scale: float = 1.0, **style: object) -> bool:
    values = frame[column].to_numpy(dtype=np.float64) * scale
    if not np.isfinite(values).any():
        return False
    ax.plot(frame["t_s"], values, label=label, **style)  # type: ignore[arg-type]
    return True


def _present(server: pd.DataFrame, column: str) -> bool:
    return bool(np.isfinite(server[column].to_numpy(dtype=np.float64)).any())


def _requests(ax: Axes, server: pd.DataFrame, client: pd.DataFrame, centers: pd.Series) -> None:
    ax.plot(centers, client["in_flight"], color="C0", label="client in flight")
    if _present(server, "running"):
        queued = (server["running"] + server["waiting"].fillna(0)).to_numpy(dtype=np.float64)
        ax.plot(server["t_s"], queued, color="C3", marker=".", label="server running + waiting")
        _plot(ax, server, "running", "server running", color="C2", marker=".")
    ax.set_ylabel("requests")


def _cache(ax: Axes, server: pd.DataFrame) -> None:
    _plot(ax, server, "kv_cache_usage", "KV cache in use", 100.0, color="C4", marker=".")
    ax.set_ylabel("KV cache %")
    ax.set_ylim(0, 100)
    if np.nansum(server["preemptions"].to_numpy(dtype=np.float64)) > 0:
        twin = ax.twinx()
        twin.bar(server["t_s"], server["preemptions"], width=0.4, color=LIMIT_COLOR, alpha=0.6, label="preemptions")
        twin.set_ylabel("preemptions")


def _prefix(ax: Axes, server: pd.DataFrame) -> None:
    _plot(ax, server, "prefix_cache_hit_rate", "prefix-cache hit rate", 100.0, color="C5", marker=".")
    ax.set_ylabel("prefix hits %")
    ax.set_ylim(0, 100)


def _tokens(ax: Axes, server: pd.DataFrame, client: pd.DataFrame, centers: pd.Series) -> None:
    ax.plot(centers, client["output_tokens_per_s"], color="C0", label="client received")
    _plot(ax, server, "generation_tokens_per_s", "server generated", color="C3", marker=".")
    ax.set_ylabel("output tokens/s")


def figure(server: pd.DataFrame, client: pd.DataFrame, steps: Sequence[StepInfo], title: str) -> bytes:
    """Over the run: the server's running and queued requests against the client's in flight, its KV-cache use and
    preemptions and its prefix-cache hit rate (when it exports them), and output tokens per second as each side
    counted them."""
    missing = [name for column, name in (("kv_cache_usage", "KV-cache use"),
               ("prefix_cache_hit_rate", "prefix-cache hit rate")) if not _present(server, column)]  # fmt: skip
    panels = 4 - len(missing)
    fig = Figure(figsize=(13, 2.1 * panels + 0.6))
    axes = list(fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0])
    centers = client["t_s"] + (client["t_s"].diff().median() if len(client) > 1 else 1.0) / 2
    _requests(axes[0], server, client, centers)
    rest = iter(axes[1:-1])
    if "KV-cache use" not in missing:
        _cache(next(rest), server)
    if "prefix-cache hit rate" not in missing:
        _prefix(next(rest), server)
    _tokens(axes[-1], server, client, centers)
    axes[-1].set_xlabel("seconds since the run started")
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        _mark_steps(ax, steps)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="upper left")
    for step in steps:
        axes[0].text(step.started_ns / 1e9, 1.02, f" {step.label}", transform=axes[0].get_xaxis_transform(),
                     fontsize=8)  # fmt: skip
    absent = f"; not exported: {', '.join(missing)}" if missing else ""
    fig.suptitle(f"{title}: the server's own metrics (grey: warm-up{absent})", y=1.01)
    return png(fig)
