"""The command, `python -m benchmarks.server_capacity`: start the servers, probe each, measure them in interleaved
rounds with wrk, report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchmarks.server_capacity as package
from benchmarks.server_capacity.measurement import Measurement, ServerResult, check_probes, check_run, warn
from benchmarks.server_capacity.probe import probe
from benchmarks.server_capacity.report import SECTION, as_json, report
from benchmarks.server_capacity.servers import LOAD_CPU, PROCESSES, STARTERS, Server
from benchmarks.server_capacity.wrk import ensure_wrk, run_wrk
from benchmarks.support import ROOT
from benchmarks.support.machine import machine
from benchmarks.support.peers import GUIDELLM, ToolUnavailable
from benchmarks.support.processes import log_tail, tool_version
from benchmarks.support.results import RESULTS, command, now_utc, update_section


def run_all(names: list[str], wrk: str, args: argparse.Namespace, work: Path) -> list[ServerResult]:
    results: dict[str, ServerResult] = {}
    servers: dict[str, Server] = {}
    for name in names:
        print(f"starting {name} ...", flush=True)
        try:
            server = STARTERS[name](work)
        except Exception as exc:
            PROCESSES.stop_all(keep=[s.proc for s in servers.values()])
            print(f"   failed to start: {exc}", flush=True)
            results[name] = ServerResult(name, name, "", failure=f"did not start: {exc}")
            continue
        servers[name] = server
        result = results[name] = ServerResult(name, server.label, server.note)
        try:
            for stream in (False, True):
                probes = [probe(server, stream) for _ in range(3)]  # sizes vary a little (texts, timestamps)
                measurement = Measurement(probes, stream, problems=check_probes(probes, stream))
                if stream:
                    result.stream = measurement
                else:
                    result.plain = measurement
                shape = f"{probes[0].events} SSE events + [DONE], " if stream else ""
                print(
                    f"   probe {'streamed' if stream else 'non-streamed'}: {shape}{probes[0].wire_bytes} B", flush=True
                )
        except Exception as exc:
            result.failure = f"probe failed: {exc}"
            print(f"   {result.failure}", flush=True)
    active = [n for n in names if n in servers and not results[n].failure]
    per_round_s = max(1, round(args.duration / args.rounds))
    for r in range(args.rounds):
        order = active[r % len(active) :] + active[: r % len(active)] if active else []
        for name in order:
            server, result = servers[name], results[name]
            if result.failure:
                continue
            for stream in (False, True):
                m = result.mode(stream)
                assert m is not None
                label = f"round {r + 1}/{args.rounds} {name} {'streamed' if stream else 'non-streamed'}"
                try:
                    run_wrk(wrk, server, stream, args.warmup if r == 0 else 1, args.connections, work)  # warm-up
                    load = run_wrk(wrk, server, stream, per_round_s, args.connections, work)
                except Exception as exc:
                    result.failure = f"{label} failed: {exc}"
                    print(f"   {result.failure}", flush=True)
                    break
                m.runs.append(load)
                check_run(m, load, args.connections)
                unit = "chunks/s" if stream else "req/s"
                print(
                    f"{label}: {m.rates[-1]:,.0f} {unit}; server CPU {load.server_cpu:.0%}, wrk CPU "
                    f"{load.load_cpu:.0%}, others {load.other_cpu:.0%}; errors {load.error_total}",
                    flush=True,
                )
            if server.proc.poll() is not None and not result.failure:
                result.failure = f"server exited with {server.proc.returncode}:\n{log_tail(server.log_path)}"
    for name, server in servers.items():
        PROCESSES.stop(server.proc)
        for done in (results[name].plain, results[name].stream):
            if done is not None and done.runs:
                warn(done)
    return [results[n] for n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = package.__doc__ or ""
    p = argparse.ArgumentParser(prog="python -m benchmarks.server_capacity", description=doc.splitlines()[0])
    p.add_argument(
        "--duration",
        type=float,
        default=15.0,
        help="measured seconds per number, split over the rounds (default %(default)s)",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds in the first round (default %(default)s)")
    p.add_argument("--connections", type=int, default=64, help="wrk keep-alive connections (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run (~30 s): one round of 2 s after a 1 s warm-up")
    p.add_argument(
        "--servers", default="ours,guidellm,bare", help="comma-separated subset of ours,guidellm,bare (default all)"
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--markdown", type=Path, help="also write the report (Markdown) to this file")
    p.add_argument(
        "--update-results",
        action="store_true",
        help=f"replace this benchmark's section of {RESULTS.relative_to(ROOT)} with the report (if all runs are valid)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 2.0, 1, 1.0
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1:
        p.error("--rounds, --duration and --connections must be positive")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(STARTERS)
    if unknown:
        p.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    PROCESSES.stop_on_exit()
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        sys.exit("needs at least 2 CPUs and taskset (util-linux)")
    # This process only orchestrates; keep it off the server's core.
    os.sched_setaffinity(0, {LOAD_CPU})
    wrk = ensure_wrk()
    if "guidellm" in args.servers:
        try:
            GUIDELLM.command()  # installed (once) before any server starts
        except ToolUnavailable as exc:
            sys.exit(str(exc))
    meta: dict[str, Any] = {
        "date": now_utc(),
        "command": command("benchmarks.server_capacity", argv),
        "machine": machine().as_dict(load_digits=2),
        "wrk": tool_version([wrk, "-v"]).split(" [")[0],
        "guidellm": tool_version([*GUIDELLM.command(), "--version"]) if "guidellm" in args.servers else "not run",
        "connections": args.connections,
        "rounds": args.rounds,
        "round_s": max(1, round(args.duration / args.rounds)),
        "warmup_s": args.warmup,
    }
    print(
        f"server capacity: {meta['machine']['nproc']} CPUs ({meta['machine']['cpu']}), "
        f"load average {meta['machine']['load_avg']}; servers: {', '.join(args.servers)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="server_capacity_") as tmp:
        results = run_all(args.servers, wrk, args, Path(tmp))
    text = report(results, meta)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": [as_json(r) for r in results]}, indent=2))
    ok = all(r.plain and r.stream and r.plain.valid and r.stream.valid and not r.failure for r in results)
    if not ok:
        print("Some runs are INVALID or failed; their numbers must not be used.", file=sys.stderr)
    elif args.update_results:
        update_section(SECTION, text)
        print(f"updated {RESULTS.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
