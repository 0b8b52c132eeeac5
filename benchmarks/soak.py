"""Soak under faults: the reference server keeps serving and leaves nothing behind.

    python -m benchmarks.soak [--requests 10000] [--quick] [--json PATH] [--update-results]

Starts `python -m reference_server --enable-faults` (simulator, 127.0.0.1, two keys with the limit of 30) and sends
it a seeded mix of requests from 48 concurrent clients, 36 of them on one key so that it also meets its limit:

* normal streamed and non-streamed chat and completion requests;
* clients that disconnect mid-stream, after one to three events;
* client timeouts (10–80 ms) on long streams and on non-streamed requests;
* simulator faults (`x-fault`): no_done, malformed_chunk, reset, error_500, double_done, wrong_usage,
  changing_id, and stall beyond the client's timeout;
* clients that send headers and part of a body, then go away; bodies that are not JSON.

A warm-up of the same mix comes first (`--warmup-requests`); the baseline of every figure is taken after it, with
the server idle and every client connection closed, and compared with the same figures after the run:

* in flight per key (`llm_requests_in_flight`): 0;
* engine: `llm_engine_running_sequences` and `..._waiting_sequences` 0, and its requests add up: finished +
  aborted is at least the requests that got a token and at most those the HTTP layer admitted, and finished is
  at least the requests that got their whole answer;
* HTTP: per status, the server counted at least what the client saw, and no more requests than were sent;
* sockets: the server process holds no more sockets (`/proc/<pid>/fd`) than at the baseline, and no TCP
  connection of its port is left established or in CLOSE-WAIT;
* resident memory (`VmRSS`): growth under 10 %.

Exits 1 if a check fails. Bounded: the run stops dispatching after `--max-seconds`, which also fails it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.support.results import RESULTS, update_section
from harness.target.launch import DEFAULT_MODEL, LaunchedServer, launch_reference_server

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Soak under faults (`python -m benchmarks.soak`)"
RSS_GROWTH_LIMIT = 0.10
CLIENTS_ON_KEY = (36, 12)  # the first key is over its limit of 30 part of the time
SERVER_ARGS = [
    "--enable-faults",
    "--ttft-ms=2",
    "--itl-ms=2",
    "--output-len-mean=16",
    "--concurrency-limit=30",
    "--body-timeout=2",
]
KINDS: dict[str, float] = {  # share of the mix
    "stream": 0.30,
    "complete": 0.10,
    "disconnect": 0.15,
    "timeout": 0.10,
    "fault": 0.30,
    "abandoned_body": 0.03,
    "not_json": 0.02,
}
FAULTS = (
    "no_done",
    "malformed_chunk:2",
    "reset:1",
    "reset:3",
    "error_500",
    "double_done",
    "wrong_usage",
    "changing_id",
    "stall:2000",
)
COMPLETION_ENDPOINTS = ("/v1/chat/completions", "/v1/completions")


# ---------------------------------------------------------------------------------------------------------------
# The client side: one outcome per request.


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)  # by kind
    status: Counter[int] = field(default_factory=Counter)  # statuses the client saw
    outcome: Counter[str] = field(default_factory=Counter)  # what the client did or met
    token_seen: int = 0  # the engine certainly started these
    answer_whole: int = 0  # [DONE] or a whole JSON answer: the engine certainly finished these

    def merge(self, other: Tally) -> None:
        self.sent.update(other.sent)
        self.status.update(other.status)
        self.outcome.update(other.outcome)
        self.token_seen += other.token_seen
        self.answer_whole += other.answer_whole


def _body(rng: random.Random, stream: bool, max_tokens: int, chat: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": DEFAULT_MODEL, "max_tokens": max_tokens, "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": f"soak {rng.randrange(10**6)}"}]
    else:
        body["prompt"] = f"soak {rng.randrange(10**6)}"
    return body


def _has_token(data: bytes) -> bool:
    try:
        chunk = orjson.loads(data)
        choice = chunk["choices"][0]
        text = choice["delta"].get("content") if "delta" in choice else choice.get("text")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return False
    return bool(text)


class Soak:
    def __init__(self, server: LaunchedServer, seed: int) -> None:
        self.server = server
        self.url = server.target.root_url
        self.keys = (server.target.api_key, server.target.api_key_2 or server.target.api_key)
        self.rng = random.Random(seed)
        self.host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    async def run(self, requests: int, deadline: float, session: aiohttp.ClientSession) -> tuple[Tally, bool]:
        queue = iter(range(requests))
        tallies = []
        workers = []
        for key_index, clients in enumerate(CLIENTS_ON_KEY):
            for _ in range(clients):
                tally = Tally()
                tallies.append(tally)
                workers.append(self._worker(queue, deadline, session, self.keys[key_index], tally))
        finished = await asyncio.gather(*workers)
        total = Tally()
        for t in tallies:
            total.merge(t)
        return total, all(finished)

    async def _worker(
        self, queue: Iterator[int], deadline: float, session: aiohttp.ClientSession, key: str, tally: Tally
    ) -> bool:
        for _ in queue:
            if time.monotonic() > deadline:
                return False
            kind = self.rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
            tally.sent[kind] += 1
            seed = self.rng.randrange(2**32)
            try:
                await self._one(kind, random.Random(seed), session, key, tally)
            except TimeoutError:
                tally.outcome["client timeout"] += 1
            except (aiohttp.ClientError, ConnectionError) as exc:
                tally.outcome[f"connection: {type(exc).__name__}"] += 1
        return True

    async def _one(self, kind: str, rng: random.Random, session: aiohttp.ClientSession, key: str, t: Tally) -> None:
        chat = rng.random() < 0.5
        path = COMPLETION_ENDPOINTS[0 if chat else 1]
        headers = {"Authorization": f"Bearer {key}"}
        if kind == "abandoned_body":
            await self._abandon_body(path, key)
            t.outcome["body abandoned"] += 1
            return
        if kind == "not_json":
            async with session.post(
                f"{self.url}{path}", data=b"{not json", headers={**headers, "Content-Type": "application/json"}
            ) as r:
                t.status[r.status] += 1
                await r.read()
            return
        stream = kind in ("stream", "disconnect") or (kind in ("timeout", "fault") and rng.random() < 0.8)
        max_tokens = rng.randrange(4, 25)
        timeout_s = 30.0
        if kind == "fault":
            fault = rng.choice(FAULTS)
            headers["x-fault"] = fault
            if fault.startswith("stall"):
                timeout_s = 0.1
        elif kind == "disconnect":
            max_tokens = 64
        elif kind == "timeout":
            max_tokens, timeout_s = 200, rng.uniform(0.01, 0.08)
        body = {**_body(rng, stream, max_tokens, chat), "ignore_eos": kind in ("disconnect", "timeout")}
        async with asyncio.timeout(timeout_s), session.post(f"{self.url}{path}", json=body, headers=headers) as r:
            t.status[r.status] += 1
            if r.status != 200:
                await r.read()
                return
            if not stream:
                answer = orjson.loads(await r.read())
                if answer.get("choices"):
                    t.token_seen += 1
                    t.answer_whole += 1
                return
            if kind == "disconnect":
                for _ in range(rng.randint(1, 3)):
                    await r.content.readuntil(b"\n\n")
                r.close()  # gone, mid-stream
                t.outcome["disconnected mid-stream"] += 1
                return
            raw = await r.read()
        events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
        if any(_has_token(e) for e in events):
            t.token_seen += 1
        if b"[DONE]" in events:
            t.answer_whole += 1
            t.outcome["stream to [DONE]"] += 1
        else:
            t.outcome["stream without [DONE]"] += 1

    async def _abandon_body(self, path: str, key: str) -> None:
        _, writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
        )
        writer.write(head.encode() + b'{"model": "')
        await writer.drain()
        await asyncio.sleep(0.005)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# ---------------------------------------------------------------------------------------------------------------
# The server side: what its process holds, and what it says in /metrics.


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith("socket:"):
                count += 1
    return count


def tcp_states(port: int) -> Counter[str]:
    """TCP connections with `port` at one end, by state (from /proc/net/tcp, as `ss` reads them)."""
    names = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN", "04": "FIN_WAIT1"}
    states: Counter[str] = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port:
                    states[names.get(fields[3], fields[3])] += 1
    return states


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
        held = sockets(pid)
        if (idle and (baseline_sockets is None or held <= baseline_sockets)) or time.monotonic() > deadline:
            states = tcp_states(soak.port)
            return Snapshot(rss_kib(pid), held, dict(states), text)
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, AttributeError):
        match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        mem = f"{int(match.group(1)) / 1024 / 1024:.0f} GiB" if match else "?"
    return {
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


async def soak_run(args: argparse.Namespace) -> dict[str, Any]:
    extra = [*SERVER_ARGS, f"--seed={args.seed}"]
    with launch_reference_server(extra_args=extra, keys=2, startup_timeout_s=120) as server:
        soak = Soak(server, args.seed)
        pid = server.process.pid
        started = time.monotonic()
        deadline = started + args.max_seconds
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            warm, warm_ok = await soak.run(args.warmup_requests, deadline, session)
        base = await settle(soak, None)
        fresh_sockets = base.sockets
        connector = aiohttp.TCPConnector(limit=0)
        run_started = time.monotonic()
        async with aiohttp.ClientSession(connector=connector) as session:
            tally, complete = await soak.run(args.requests, deadline, session)
            peak_sockets = sockets(pid)
        run_s = time.monotonic() - run_started
        end = await settle(soak, fresh_sockets)
        alive = server.process.poll() is None
        log_errors = [line for line in server.log_lines if "Traceback" in line or " ERROR " in line]
    return evaluate(args, warm, warm_ok, tally, complete, base, end, peak_sockets, run_s, alive, log_errors)


def evaluate(
    args: argparse.Namespace,
    warm: Tally,
    warm_ok: bool,
    tally: Tally,
    complete: bool,
    base: Snapshot,
    end: Snapshot,
    peak_sockets: int,
    run_s: float,
    alive: bool,
    log_errors: list[str],
) -> dict[str, Any]:
    def engine(s: Snapshot) -> dict[str, int]:
        return {
            name: int(metric(s.metrics, f"llm_engine_{name}"))
            for name in ("running_sequences", "waiting_sequences", "finished_requests", "aborted_requests")
        }

    e0, e1 = engine(base), engine(end)
    finished = e1["finished_requests"] - e0["finished_requests"]
    aborted = e1["aborted_requests"] - e0["aborted_requests"]
    server0, server1 = http_counts(base.metrics), http_counts(end.metrics)
    server_counts = {s: server1[s] - server0[s] for s in sorted(set(server1) | set(server0)) if server1[s] - server0[s]}
    refused = sum(n for s, n in tally.status.items() if s != 200)  # answered without the engine
    admitted_at_most = sum(tally.sent.values()) - refused
    in_flight = {k: metric(end.metrics, "llm_requests_in_flight", f'{{key="{k}"}}') for k in ("cli-1", "cli-2")}
    in_flight_base = {k: metric(base.metrics, "llm_requests_in_flight", f'{{key="{k}"}}') for k in ("cli-1", "cli-2")}
    rss_growth = end.rss_kib / base.rss_kib - 1
    checks = {
        "run completed within --max-seconds": complete and warm_ok,
        "server alive, no error in its log": alive and not log_errors,
        "in flight per key back to 0": not any(in_flight.values()),
        "engine: nothing running or waiting": e1["running_sequences"] == 0 and e1["waiting_sequences"] == 0,
        "engine: finished + aborted >= requests that got a token": finished + aborted >= tally.token_seen,
        "engine: finished + aborted <= requests admitted": finished + aborted <= admitted_at_most,
        "engine: finished >= requests answered whole": finished >= tally.answer_whole,
        "HTTP: server counted at least what the client saw, per status": all(
            server_counts.get(s, 0) >= n for s, n in tally.status.items() if s != 200
        ),
        "HTTP: server counted no more requests than were sent": sum(server_counts.values()) <= sum(tally.sent.values()),
        "sockets back to the baseline": end.sockets <= base.sockets,
        "no connection left established or in CLOSE-WAIT": not end.tcp.get("ESTABLISHED")
        and not end.tcp.get("CLOSE_WAIT"),
        f"resident memory growth < {RSS_GROWTH_LIMIT:.0%}": rss_growth < RSS_GROWTH_LIMIT,
    }
    return {
        "requests": sum(tally.sent.values()),
        "warmup_requests": sum(warm.sent.values()),
        "run_s": round(run_s, 1),
        "requests_per_s": round(sum(tally.sent.values()) / run_s, 1) if run_s else None,
        "mix": dict(tally.sent),
        "client_statuses": {str(k): v for k, v in sorted(tally.status.items())},
        "client_outcomes": dict(tally.outcome),
        "server_statuses": {str(k): v for k, v in server_counts.items()},
        "engine": {
            "finished": finished,
            "aborted": aborted,
            "token_seen": tally.token_seen,
            "answer_whole": tally.answer_whole,
            "admitted_at_most": admitted_at_most,
            "running": e1["running_sequences"],
            "waiting": e1["waiting_sequences"],
        },
        "in_flight": in_flight,
        "in_flight_baseline": in_flight_base,
        "engine_baseline": {"running": e0["running_sequences"], "waiting": e0["waiting_sequences"]},
        "sockets": {"baseline": base.sockets, "peak": peak_sockets, "end": end.sockets, "tcp_end": end.tcp},
        "rss_kib": {"baseline": base.rss_kib, "end": end.rss_kib, "growth": round(rss_growth, 4)},
        "log_errors": log_errors[:5],
        "checks": checks,
        "ok": all(checks.values()),
    }


def report(result: dict[str, Any], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    e = result["engine"]
    s = result["sockets"]
    r = result["rss_kib"]
    b = result["engine_baseline"]
    lines = [
        SECTION,
        "",
        f"Date: {meta['date']}. Machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory']}, Python {m['python']}, "
        f"Linux {m['kernel']} (load average {m['load_avg']} at the start). Command: `{meta['command']}`.",
        "",
        f"{result['requests']} requests after {result['warmup_requests']} of warm-up, in {result['run_s']} s "
        f"({result['requests_per_s']}/s) from 48 clients on two keys (36 on one, limit 30). Mix: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["mix"].items()))
        + ".",
        "",
        "| figure | after warm-up (baseline) | after the run |",
        "| --- | ---: | ---: |",
        f"| resident memory (VmRSS) | {r['baseline'] / 1024:.1f} MiB | {r['end'] / 1024:.1f} MiB "
        f"({r['growth']:+.1%}) |",
        f"| sockets held by the server | {s['baseline']} | {s['end']} (peak {s['peak']} during the run) |",
        f"| in flight per key | {_per_key(result['in_flight_baseline'])} | {_per_key(result['in_flight'])} |",
        f"| engine running / waiting | {b['running']} / {b['waiting']} | {e['running']} / {e['waiting']} |",
        "",
        f"Engine requests: {e['finished']} finished + {e['aborted']} aborted = {e['finished'] + e['aborted']}; "
        f"the client saw a token from {e['token_seen']} and a whole answer ([DONE] or JSON) for "
        f"{e['answer_whole']}; at most {e['admitted_at_most']} were admitted (sent minus answered with an error).",
        "Statuses the client saw: "
        + ", ".join(f"{k}: {v}" for k, v in result["client_statuses"].items())
        + "; the server counted: "
        + ", ".join(f"{k}: {v}" for k, v in result["server_statuses"].items())
        + " (499: the client went away).",
        "Client outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(result["client_outcomes"].items())) + ".",
        "",
        "Checks: " + "; ".join(f"{name} {'✓' if ok else '✗ FAILED'}" for name, ok in result["checks"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


def _per_key(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in values.items())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=10_000, help="measured requests (default %(default)s)")
    p.add_argument("--warmup-requests", type=int, default=1_000, help="warm-up requests (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=900.0, help="stop dispatching after this (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="CI form: 1,200 requests after 400 of warm-up, 120 s at most")
    p.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    p.add_argument("--update-results", action="store_true", help=f"replace this benchmark's section of {RESULTS.name}")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.warmup_requests, args.max_seconds = 1_200, 400, 120.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "-m", "benchmarks.soak", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
    }
    result = asyncio.run(soak_run(args))
    text = report(result, meta)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "result": result}, indent=2))
    if not result["ok"]:
        print("soak: a check FAILED", file=sys.stderr)
    elif args.update_results:
        update_section(SECTION, text)
        print(f"updated {RESULTS.relative_to(ROOT)}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
