"""Multi-turn sessions against the simulator: measured TTFT by turn against what its latency model predicts, with
its prefix cache and without it (the baseline, in the same run).

The simulator's TTFT is `--ttft-ms` + `--prefill-ms-per-token` × the prompt tokens it did not find cached (no
queueing here: far fewer sessions than `--max-num-seqs`). `harness bench` plays sessions of `--turns` turns
(`--users` users back to back, `--user-tokens` new tokens a turn, `--answer-tokens` tokens an answer, a short think
time) against it twice: with its prefix cache (the default: 16-token blocks) and with `--prefix-cache-blocks 0`.
Per turn, from the records: the prompt and cached tokens the server reported (openai profile), the TTFT measured
(p50) and the model's prediction for each request (p50), with and without the cache, and the speed-up the cache
gives.

    python -m benchmarks.sessions [--users 4] [--sessions 24] [--turns 6] [--update-results]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.support import ROOT
from benchmarks.support.harness_cli import HARNESS
from benchmarks.support.machine import load_average, machine
from benchmarks.support.results import now_utc, publish
from benchmarks.support.stats import percentile
from harness.analysis.frame import request_frame
from harness.records.record import Record, read_run

HEADING = "## Multi-turn sessions against the simulator's latency model (issue 19) — `python -m benchmarks.sessions`"
TTFT_MS, PREFILL_MS_PER_TOKEN, ITL_MS = 20.0, 0.2, 2.0


def play(cache: bool, args: argparse.Namespace, out: Path) -> list[Record]:
    sim = [f"--ttft-ms={TTFT_MS}", f"--prefill-ms-per-token={PREFILL_MS_PER_TOKEN}", f"--itl-ms={ITL_MS}",
           "--itl-batch-factor=0"] + ([] if cache else ["--prefix-cache-blocks=0"])  # fmt: skip
    argv = [
        *HARNESS, "bench", "--profile", "openai", "--concurrency", str(args.users), "--turns", str(args.turns),
        "--requests", str(args.sessions), "--warmup", "0", "--think-time", "uniform:0,0.1",
        "--input-tokens", str(args.user_tokens), "--output-tokens", str(args.answer_tokens),
        *(f"--sim-arg={a}" for a in sim), "--no-progress", "--output-dir", str(out), "--run-id", "run",
    ]  # fmt: skip
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return [r for r in read_run(out / "run" / "records.jsonl").requests if r.error_kind is None]


def predicted_ms(r: Record) -> float:
    """The simulator's latency model for one request, from what it reported: uncached prompt tokens' prefill."""
    return TTFT_MS + PREFILL_MS_PER_TOKEN * ((r.prompt_tokens or 0) - (r.cached_tokens or 0))


def by_turn(records: list[Record]) -> dict[int, tuple[float, float, float, float]]:
    """Per turn: prompt tokens p50, cached tokens p50, measured TTFT p50, predicted TTFT p50."""
    ttft = request_frame(records)["ttft_ms"].to_list()
    rows = {}
    for turn in sorted({r.turn for r in records if r.turn is not None}):
        mine = [i for i, r in enumerate(records) if r.turn == turn]
        rows[turn] = (
            percentile([records[i].prompt_tokens or 0 for i in mine], 50),
            percentile([records[i].cached_tokens or 0 for i in mine], 50),
            percentile([ttft[i] for i in mine], 50),
            percentile([predicted_ms(records[i]) for i in mine], 50),
        )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--sessions", type=int, default=24)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--user-tokens", type=int, default=200)
    p.add_argument("--answer-tokens", type=int, default=50)
    p.add_argument("--update-results", action="store_true", help=f"rewrite the section '{HEADING}' of RESULTS.md")
    args = p.parse_args()
    when, where = now_utc(), machine()
    print(f"# sessions — {when} — {where}")
    with tempfile.TemporaryDirectory() as work:
        cached = by_turn(play(True, args, Path(work) / "cache"))
        print(f"with the prefix cache: done (load {load_average()})", flush=True)
        plain = by_turn(play(False, args, Path(work) / "plain"))
        print(f"without it: done (load {load_average()})", flush=True)
    lines = [
        "| turn | prompt tokens | cached tokens | TTFT with cache: measured / model (ms) | "
        "TTFT without: measured / model (ms) | measured ÷ model, with / without | speed-up (measured) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for turn, (prompt, hit, measured, model) in cached.items():
        _, _, base, base_model = plain[turn]
        lines.append(
            f"| {turn} | {prompt:.0f} | {hit:.0f} | {measured:.1f} / {model:.1f} | {base:.1f} / {base_model:.1f} | "
            f"{measured / model:.3f} / {base / base_model:.3f} | {base / measured:.2f}× |"
        )
    summary = (
        f"{args.sessions} sessions of {args.turns} turns, {args.users} users, {args.user_tokens} new tokens a turn, "
        f"answers of {args.answer_tokens} tokens, think time uniform 0–0.1 s. Simulator: TTFT {TTFT_MS:g} ms + "
        f"{PREFILL_MS_PER_TOKEN:g} ms per uncached prompt token, ITL {ITL_MS:g} ms, openai profile; medians per turn."
    )
    body = summary + "\n\n" + "\n".join(lines)
    publish(HEADING, "benchmarks.sessions", when, where, body, update=args.update_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
