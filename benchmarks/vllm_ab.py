"""A/B: the reference server on the vllm engine versus vLLM's own OpenAI server, same model, same load.

    python -m benchmarks.vllm_ab [--rounds 3] [--num-prompts 120] [--harness-rounds 1]

Both servers serve the embedded model (SmolLM2-135M-Instruct, float32, max_model_len 2048, eager) on this machine.
The client is `vllm bench serve` from the vLLM package (random 128 input / 64 output tokens, ignore_eos,
concurrency 30), and then the project's own `harness bench` with the same load. Runs alternate A and B; the
result is the ratio of medians over rounds. Goal: ≥ 1.05× vLLM's output throughput and ≤ 0.95× its TTFT p50.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.support.harness_cli import bench_argv
from benchmarks.support.peers import VLLM_BENCH
from harness.target.endpoint import Target
from harness.target.launch import launch_reference_server, launch_vllm_openai_server, new_key
from reference_server.engines.embedded_model import SERVED_MODEL_ID, ensure_embedded_model

ENGINE = ["--max-model-len", "2048", "--enforce-eager", "--dtype", "float32", "--gpu-memory-utilization", "0.3"]


def bench_serve(root_url: str, key: str, model_dir: Path, num_prompts: int, out: Path) -> dict[str, float]:
    argv = [
        *VLLM_BENCH.command(),
        "--backend",
        "openai",
        "--base-url",
        root_url,
        "--endpoint",
        "/v1/completions",
        "--model",
        SERVED_MODEL_ID,
        "--tokenizer",
        str(model_dir),
        "--dataset-name",
        "random",
        "--random-input-len",
        "128",
        "--random-output-len",
        "64",
        "--num-prompts",
        str(num_prompts),
        "--max-concurrency",
        "30",
        "--ignore-eos",
        "--seed",
        "0",
        "--disable-tqdm",
        "--save-result",
        "--result-dir",
        str(out.parent),
        "--result-filename",
        out.name,
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
    ]
    env = {**os.environ, "OPENAI_API_KEY": key}
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    r = json.loads(out.read_text())
    return {
        "req_s": r["request_throughput"],
        "out_tok_s": r["output_throughput"],
        "ttft_p50_ms": r["median_ttft_ms"],
        "tpot_p50_ms": r["median_tpot_ms"],
        "failed": r["failed"],
    }


def harness_bench(base_url: str, key: str, num_prompts: int, out: Path) -> dict[str, float]:
    argv = bench_argv(
        Target.of(base_url, [key], SERVED_MODEL_ID),
        out,
        "ab",
        "--endpoint",
        "completion",
        "--concurrency",
        "30",
        "--requests",
        str(num_prompts),
        "--input-tokens",
        "128",
        "--output-tokens",
        "64",
    )
    subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    summary = json.loads((out / "ab" / "summary.json").read_text())
    overall = summary["overall"]
    latency = overall["latency_ms"]
    return {
        "req_s": overall["throughput"]["requests_per_s"],
        "out_tok_s": overall["throughput"]["output_tokens_per_s"],
        "ttft_p50_ms": latency["ttft"]["p50"],
        "tpot_p50_ms": latency["tpot"]["p50"],
        "failed": overall["requests"]["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds with vllm bench serve")
    parser.add_argument("--harness-rounds", type=int, default=1, help="A/B rounds with harness bench")
    parser.add_argument("--num-prompts", type=int, default=120)
    args = parser.parse_args()
    model_dir = ensure_embedded_model()
    key = new_key()
    work = Path(tempfile.mkdtemp(prefix="vllm-ab-"))
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · {os.cpu_count()} CPUs · load {os.getloadavg()}")
    results: dict[str, dict[str, list[dict[str, float]]]] = {"vllm bench serve": {}, "harness bench": {}}
    with ExitStack() as stack:
        ours = stack.enter_context(
            launch_reference_server(
                engine="vllm",
                extra_args=[*ENGINE, "--api-key", key],
                startup_timeout_s=1200,
                log_path=work / "ours.log",
                # A race against vLLM's own server, which serves on uvloop; no trace is read here.
                event_loop="uvloop",
            )
        )
        theirs_root = stack.enter_context(
            launch_vllm_openai_server(model_dir, SERVED_MODEL_ID, key, ENGINE, log_path=work / "theirs.log")
        )
        servers = {
            "A reference server (vllm engine)": (ours.target.root_url, ours.target.api_key),
            "B vLLM OpenAI server": (theirs_root, key),
        }
        for client, rounds in (("vllm bench serve", args.rounds), ("harness bench", args.harness_rounds)):
            for r in range(rounds):
                order = list(servers.items()) if r % 2 == 0 else list(reversed(servers.items()))
                for name, (root, k) in order:
                    out = work / f"{client.split()[0]}-{name[0]}-{r}.json"
                    if client == "vllm bench serve":
                        m = bench_serve(root, k, model_dir, args.num_prompts, out)
                    else:
                        m = harness_bench(f"{root}/v1", k, args.num_prompts, out.with_suffix(""))
                    results[client].setdefault(name, []).append(m)
                    print(
                        f"{client:17} round {r + 1} {name:34} " + " ".join(f"{k}={v:.4g}" for k, v in m.items()),
                        flush=True,
                    )
    for client, by_server in results.items():
        if not by_server:
            continue
        med = {n: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for n, ms in by_server.items()}
        a, b = (med[n] for n in servers)
        print(f"\n{client}: medians over {len(next(iter(by_server.values())))} rounds")
        print("| server | req/s | output tok/s | TTFT p50 ms | TPOT p50 ms | failed |\n|---|---:|---:|---:|---:|---:|")
        for n, m in med.items():
            print(
                f"| {n} | {m['req_s']:.3f} | {m['out_tok_s']:.1f} | {m['ttft_p50_ms']:.0f} | "
                f"{m['tpot_p50_ms']:.1f} | {m['failed']:.0f} |"
            )
        print(
            f"ratio A/B: output throughput {a['out_tok_s'] / b['out_tok_s']:.3f}× (goal ≥ 1.05), "
            f"TTFT p50 {a['ttft_p50_ms'] / b['ttft_p50_ms']:.3f}× (goal ≤ 0.95)"
        )


if __name__ == "__main__":
    main()
