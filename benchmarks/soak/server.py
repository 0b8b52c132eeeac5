"""The server side of the soak: what the server's process holds (memory, sockets, connections) and what it says in
/metrics, read once it has settled."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp

from benchmarks.soak.mix import COMPLETION_ENDPOINTS, Soak
from benchmarks.support.usage import rss_kib, socket_count, tcp_states


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$" if labels else rf"^{re.escape(name)} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def http_counts(text: str) -> Counter[int]:
    counts: Counter[int] = Counter()
    for endpoint, status, value in re.findall(
        r'^llm_requests_total\{endpoint="([^"]*)",status="(\d+)"\} (\S+)$', text, re.MULTILINE
    ):
        if endpoint in COMPLETION_ENDPOINTS:
            counts[int(status)] += int(float(value))
    return counts


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics", headers={"Connection": "close"}) as r:
        return await r.text()


@dataclass
class Snapshot:
    rss_kib: int
    sockets: int
    tcp: dict[str, int]
    metrics: str


async def settle(soak: Soak, baseline_sockets: int | None, timeout_s: float = 15.0) -> Snapshot:
    """The server once idle: nothing in flight, engine empty, and its sockets back to the baseline (if given)."""
    pid = soak.server.process.pid
    deadline = time.monotonic() + timeout_s
    while True:
        text = await scrape(soak.url)
        idle = (
            all(metric(text, "llm_requests_in_flight", f'{{key="{k}"}}') == 0 for k in ("cli-1", "cli-2"))
            and metric(text, "llm_engine_running_sequences") == 0
            and metric(text, "llm_engine_waiting_sequences") == 0
        )
        held = socket_count(pid)
        if (idle and (baseline_sockets is None or held <= baseline_sockets)) or time.monotonic() > deadline:
            states = tcp_states(soak.port)
            return Snapshot(rss_kib(pid), held, dict(states), text)
        await asyncio.sleep(0.1)
