"""The report's real-traffic sections, from a summary's `traffic` figures (`harness.analysis.traffic`).

Each section appears only for runs that have its figures: TTFT by turn for sessions, TTFT by context length and the
prefix cache for any run of sessions, shared prefixes or a trace (or whose server reported cached tokens), the
sessions' durations for sessions, and the replay's timing for a trace. One definition per table serves the HTML page
and the Markdown note.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.analysis.shape import Summary, Traffic, TrafficCache
from harness.report.tables import Table, ms, num, pct

TURN_NOTE = (
    "TTFT in ms over the successful measured turns; tokens are means of what the server's usage reported: the "
    "prompt, the history it carried (the previous turn's prompt and answer) and the prompt tokens it had cached."
)
REPLAY_NOTE = (
    "Lag: each request's first send less its time in the trace (scaled by --time-scale), in ms. Per second: the "
    "largest and the mean |requests sent − requests due| over the trace's seconds."
)


def turn_table(traffic: Traffic) -> Table | None:
    turns = traffic["turns"]
    if not turns:
        return None
    headers = ["turn", "ok/total", "TTFT p50", "TTFT p90", "TTFT p99", "prompt tok", "history tok", "cached tok", "hit"]
    rows = [
        [
            str(t["turn"]),
            f"{t['ok']}/{t['requests']}",
            ms(t["ttft_ms"]["p50"]),
            ms(t["ttft_ms"]["p90"]),
            ms(t["ttft_ms"]["p99"]),
            num(t["prompt_tokens_mean"], 0),
            num(t["history_tokens_mean"], 0),
            num(t["cached_tokens_mean"], 0),
            pct(t["cache_hit_share"]),
        ]
        for t in turns
    ]
    return Table(headers, rows)


def context_table(traffic: Traffic) -> Table | None:
    if not traffic["context"]:
        return None
    rows = []
    for c in traffic["context"]:
        high = c["max_tokens"]
        span = f"{c['min_tokens']:,}–{high:,}" if high is not None else f"≥ {c['min_tokens']:,}"
        ttft = c["ttft_ms"]
        rows.append([span, str(c["requests"]), ms(ttft["p50"]), ms(ttft["p90"]), ms(ttft["p99"])])
    return Table(["prompt tokens", "requests", "TTFT p50", "TTFT p90", "TTFT p99"], rows)


def cache_line(cache: TrafficCache) -> str:
    """The prefix cache in one sentence."""
    groups = f"; {cache['prefix_groups']} shared-prefix group(s)" if cache["prefix_groups"] else ""
    if not cache["reported"]:
        return (
            f"The server reported no cached tokens for the {cache['requests']} successful requests{groups} (the "
            "anyscale profile's usage has no field for them; the openai profile's prompt_tokens_details has)."
        )
    return (
        f"Cache hits: {pct(cache['hit_share'])} of the prompt tokens ({cache['cached_tokens']:,} of "
        f"{cache['prompt_tokens']:,}) over the {cache['reported']} successful requests that reported them; "
        f"{cache['with_hits']} had a hit{groups}."
    )


def sessions_table(traffic: Traffic) -> Table | None:
    found = traffic["sessions"]
    if found is None:
        return None
    rows = [
        ["sessions", str(found["count"]), "", ""],
        ["complete", str(found["complete"]), "", ""],
        ["stopped by a failed turn", str(found["stopped"]), "", ""],
    ]
    turns = found["turns"]
    rows.append(["turns played", num(turns["p50"], 0), num(turns["p99"], 0), num(turns["max"], 0)])
    for name, dist in (
        ("duration", found["duration_ms"]),
        ("think time", found["think_ms"]),
        ("duration − think", found["corrected_duration_ms"]),
    ):
        rows.append([f"{name} (ms, complete sessions)", ms(dist["p50"]), ms(dist["p99"]), ms(dist["max"])])
    return Table(["", "p50 / count", "p99", "max"], rows)


def replay_table(traffic: Traffic) -> Table | None:
    found = traffic["replay"]
    if found is None:
        return None
    lag = found["lag_ms"]
    row = [
        f"{found['sent']}/{found['requests']}",
        num(lag["p50"], 3),
        num(lag["p99"], 3),
        num(lag["max"], 3),
        num(found["trace_rate"]),
        num(found["achieved_rate"]),
        f"{num(found['per_second_max_error'], 0)} / {num(found['per_second_mean_error'])}",
    ]
    headers = ["sent/due", "lag p50", "lag p99", "lag max", "trace req/s", "sent req/s", "per-second max / mean"]
    return Table(headers, [row])


Body = list[str | Table]  # paragraphs and tables, in order


def parts(summary: Summary) -> list[tuple[str, str, Body]]:
    """The sections this run has: (anchor, heading, body)."""
    traffic = summary.get("traffic")
    if not traffic:
        return []
    out: list[tuple[str, str, Body]] = []
    if (turns := turn_table(traffic)) is not None:
        out.append(("turns", "TTFT by turn", [turns, TURN_NOTE]))
    body: Body = [cache_line(traffic["cache"])]
    if (context := context_table(traffic)) is not None:
        body += ["TTFT by the prompt's length (successful measured requests, ms):", context]
    out.append(("cache", "Prefix cache and context length", body))
    if (sessions := sessions_table(traffic)) is not None:
        out.append(("sessions", "Sessions", [sessions]))
    if (replay := replay_table(traffic)) is not None:
        out.append(("replay", "Trace replay", [replay, REPLAY_NOTE]))
    return out


def by_section(summaries: Sequence[tuple[str, Summary]]) -> list[tuple[str, str, list[tuple[str, Body]]]]:
    """The sections any of the runs has, each with the runs that have it: (anchor, heading, [(label, body)])."""
    sections: dict[str, tuple[str, list[tuple[str, Body]]]] = {}
    for label, summary in summaries:
        for anchor, heading, body in parts(summary):
            sections.setdefault(anchor, (heading, []))[1].append((label, body))
    return [(anchor, heading, runs) for anchor, (heading, runs) in sections.items()]
