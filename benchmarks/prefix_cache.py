"""Prefix caching through the HTTP layer: does a shared prefix cut TTFT on the reference server's vLLM engine as much
as on vLLM's own OpenAI server?

Both servers serve the embedded model (SmolLM2-135M-Instruct) with the same engine options (`ENGINE`: float32,
max_model_len 2048, eager, 0.3 of RAM for the KV cache; vLLM's prefix caching on, its default and the reference
server's; vLLM's server with `--enable-prompt-tokens-details` so that it reports the cached tokens too). The load
is `harness bench` against each, closed loop at `--concurrency` (1), chat requests of ~1,000 prompt tokens asking for
8 tokens, in two arms of the same lengths and load:

- **shared**: every prompt starts with the same 900-token prefix (`--shared-prefix-tokens 900`), then its own words;
- **unique**: no shared prefix, every prompt its own (as many distinct prompts as requests, a fresh seed per run,
  so nothing is cached from an earlier run but the chat template's opening).

Arms and servers alternate over `--rounds` rounds (A/B, then B/A), each run after `--warmup-requests` unmeasured
requests. The result: TTFT p50 of each arm (median over rounds), the ratio shared ÷ unique (caching works through
the HTTP layer when it is well under 0.5×), the cache-hit share the server reported, and the reference server's
ratio against vLLM's own (1× when ours loses nothing of vLLM's caching).

    python -m benchmarks.prefix_cache [--rounds 3] [--requests 20] [--concurrency 1] [--update-results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from benchmarks.support.harness_cli import bench_argv
from benchmarks.support.machine import load_average, machine
from benchmarks.support.results import now_utc, publish
from harness.target.endpoint import Target
from harness.target.launch import launch_reference_server, launch_vllm_openai_server, new_key
from reference_server.engines.embedded_model import SERVED_MODEL_ID, ensure_embedded_model

ENGINE = ["--max-model-len", "2048", "--enforce-eager", "--dtype", "float32", "--gpu-memory-utilization", "0.3"]
HEADING = "## Prefix caching through the HTTP layer (issue 19) — `python -m benchmarks.prefix_cache`"
ARMS = {"shared": ["--shared-prefix-tokens", "900"], "unique": []}


def run_arm(
    target: Target, arm: str, seed: int, requests: int, concurrency: int, warmup: int, out: Path
) -> dict[str, float]:
    argv = bench_argv(
        target, out, "run", "--profile", "openai", "--concurrency", str(concurrency), "--requests", str(requests),
        "--warmup", "0", "--warmup-requests", str(warmup), "--input-tokens", "1000", "--output-tokens", "8",
        "--num-prompts", str(requests + warmup), "--seed", str(seed), *ARMS[arm],
    )  # fmt: skip
    subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    summary = json.loads((out / "run" / "summary.json").read_text())
    overall = summary["overall"]
    cache = (summary.get("traffic") or {}).get("cache") or {}
    return {
        "ttft_p50_ms": overall["latency_ms"]["ttft"]["p50"],
        "prompt_tokens": overall["tokens"]["prompt"]["p50"],
        "hit_share": cache.get("hit_share") or 0.0,
        "ok": overall["requests"]["ok"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=20, help="measured requests per run")
    p.add_argument("--warmup-requests", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--update-results", action="store_true", help=f"rewrite the section '{HEADING}' of RESULTS.md")
    args = p.parse_args()
    when, where = now_utc(), machine()
    print(f"# prefix cache — {when} — {where}")
    model_dir = ensure_embedded_model()
    key = new_key()
    work = Path(tempfile.mkdtemp(prefix="prefix-cache-"))
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with ExitStack() as stack:
        ours = stack.enter_context(
            launch_reference_server(engine="vllm", profile="openai", extra_args=[*ENGINE, "--api-key", key],
                                    startup_timeout_s=1200, log_path=work / "ours.log", event_loop="uvloop")
        )  # fmt: skip
        theirs = stack.enter_context(
            launch_vllm_openai_server(model_dir, SERVED_MODEL_ID, key, [*ENGINE, "--enable-prompt-tokens-details"],
                                      log_path=work / "theirs.log")
        )  # fmt: skip
        servers = {
            "reference server (vllm engine)": Target.of(ours.target.base_url, [key], SERVED_MODEL_ID),
            "vLLM's own OpenAI server": Target.of(f"{theirs}/v1", [key], SERVED_MODEL_ID),
        }
        runs = 0
        for r in range(args.rounds):
            order = list(servers.items()) if r % 2 == 0 else list(reversed(servers.items()))
            for name, target in order:
                arms = list(ARMS) if (r + runs) % 2 == 0 else list(reversed(ARMS))
                for arm in arms:
                    runs += 1
                    out = work / f"run-{runs}"
                    found = run_arm(target, arm, 1000 + runs, args.requests, args.concurrency,
                                    args.warmup_requests, out)  # fmt: skip
                    results.setdefault((name, arm), []).append(found)
                    print(f"round {r + 1} {name:32} {arm:6} " + " ".join(f"{k}={v:.4g}" for k, v in found.items())
                          + f" (load {load_average()})", flush=True)  # fmt: skip
    med = {key: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for key, ms in results.items()}
    lines = [
        "| server | arm | prompt tokens p50 | TTFT p50 ms | cache-hit share | shared ÷ unique TTFT p50 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ratio = {}
    for name in servers:
        ratio[name] = med[name, "shared"]["ttft_p50_ms"] / med[name, "unique"]["ttft_p50_ms"]
        for arm in ARMS:
            m = med[name, arm]
            cell = f"**{ratio[name]:.3f}×**" if arm == "shared" else ""
            lines.append(f"| {name} | {arm} | {m['prompt_tokens']:.0f} | {m['ttft_p50_ms']:.1f} | "
                         f"{m['hit_share']:.1%} | {cell} |")  # fmt: skip
    a, b = ratio.values()
    shared_vs = (
        med["reference server (vllm engine)", "shared"]["ttft_p50_ms"]
        / med["vLLM's own OpenAI server", "shared"]["ttft_p50_ms"]
    )
    summary = (
        f"Medians over {args.rounds} rounds of {args.requests} measured requests per arm, concurrency "
        f"{args.concurrency}. Shared ÷ unique TTFT p50: reference server {a:.3f}×, vLLM's own server {b:.3f}× "
        f"(ratio of ratios {a / b:.3f}); shared-prefix TTFT p50, reference server ÷ vLLM's server: {shared_vs:.3f}×."
    )
    setup = f"Engine options of both servers: `{' '.join(ENGINE)}` (prefix caching on)."
    body = summary + "\n\n" + "\n".join(lines)
    publish(HEADING, "benchmarks.prefix_cache", when, where, body, update=args.update_results, setup=setup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
