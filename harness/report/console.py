"""The summary as a fixed-width table for the terminal: one row per step, the verdict and its reasons below."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.analysis.shape import Summary
from harness.report.marks import saturation_mark


def _ms(dist: Mapping[str, Any], name: str) -> str:
    value = dist.get(name)
    return "-" if value is None else f"{value:.1f}"


def format_table(summary: Summary) -> str:
    """The summary as a fixed-width table, one row per step."""
    head = (
        "step",
        "ok/total",
        "err%",
        "429%",
        "req/s",
        "tok/s",
        "TTFT p50/p99",
        "ITL p50/p99",
        "E2E p50/p99",
        "E2E* p99",
        "verdict",
    )
    rows = [head]
    for s in summary["steps"]:
        lat = s["latency_ms"]
        rates = s["rates"]
        rows.append(
            (
                s["label"],
                f"{s['requests']['ok']}/{s['requests']['total']}",
                "-" if rates["error"] is None else f"{rates['error']:.1%}",
                "-" if rates["rate_limited"] is None else f"{rates['rate_limited']:.1%}",
                f"{s['throughput']['requests_per_s']:.2f}",
                f"{s['throughput']['output_tokens_per_s']:.0f}",
                f"{_ms(lat['ttft'], 'p50')}/{_ms(lat['ttft'], 'p99')}",
                f"{_ms(lat['itl'], 'p50')}/{_ms(lat['itl'], 'p99')}",
                f"{_ms(lat['e2e'], 'p50')}/{_ms(lat['e2e'], 'p99')}",
                _ms(lat["e2e_from_scheduled"], "p99"),
                " ".join(filter(None, (s.get("validity", {}).get("verdict", "-"), saturation_mark(s)))),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    run_validity = summary.get("validity", {})
    lines.append("")
    lines.append("latencies in ms; E2E* is measured from the scheduled time")
    lines.append(f"run {summary['run_id']}: {run_validity.get('verdict', '-')}")
    word = run_validity.get("verdict", "INVALID")
    lines += [f"  {word}: {r}" for r in run_validity.get("reasons", [])]
    lines += [f"  warning: {w}" for w in run_validity.get("warnings", [])]
    return "\n".join(lines)
