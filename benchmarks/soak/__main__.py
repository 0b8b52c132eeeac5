"""The soak's command, `python -m benchmarks.soak`: the run (warm-up, baseline, the mix, the settled server), its
checks, and the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

import benchmarks.soak as package
from benchmarks.soak.mix import Soak, Tally
from benchmarks.soak.server import Snapshot, http_counts, metric, settle
from benchmarks.support import ROOT
from benchmarks.support.machine import machine
from benchmarks.support.results import RESULTS, command, now_utc, update_section
from benchmarks.support.usage import socket_count
from harness.target.launch import launch_reference_server

SECTION = "## Soak under faults (`python -m benchmarks.soak`)"
RSS_GROWTH_LIMIT = 0.10
SERVER_ARGS = [
    "--enable-faults",
    "--ttft-ms=2",
    "--itl-ms=2",
    "--output-len-mean=16",
    "--concurrency-limit=30",
    "--body-timeout=2",
]


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
            peak_sockets = socket_count(pid)
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
    doc = package.__doc__ or ""
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=doc.splitlines()[0])
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
    meta = {"date": now_utc(), "command": command("benchmarks.soak", argv), "machine": machine().as_dict(load_digits=1)}
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
