"""A short `harness bench` against a vLLM-backed server (the reference server on the vLLM engine, or vLLM's own),
scraping its `/metrics`, and what its summary and report must then show of vLLM's own `vllm:*` series. Shared by the
vLLM tests, which reuse their module's server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from harness.report.build import build as build_report

# The families vLLM's PrometheusStatLogger exports, as the summary must name them for each common name.
VLLM_SOURCES = {
    "running": "vllm:num_requests_running",
    "waiting": "vllm:num_requests_waiting",
    "kv_cache_usage": "vllm:kv_cache_usage_perc",
    "prefix_cache_queries": "vllm:prefix_cache_queries",
    "prefix_cache_hits": "vllm:prefix_cache_hits",
    "preemptions": "vllm:num_preemptions",
    "generation_tokens": "vllm:generation_tokens",
    "prompt_tokens": "vllm:prompt_tokens",
    "ttft": "vllm:time_to_first_token_seconds",
    "queue_time": "vllm:request_queue_time_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
}


def scraped_bench(base_url: str, key: str, model: str, profile: str, output_dir: Path) -> dict[str, Any]:
    """Two short closed-loop steps with the metrics scraped every 0.2 s; the run's summary."""
    argv = [sys.executable, "-m", "harness", "bench", "--base-url", base_url, "--api-key", key, "--model", model,
            "--profile", profile, "--sweep-concurrency", "2,6", "--requests", "12", "--warmup", "0",
            "--input-tokens", "32", "--output-tokens", "24", "--no-calibrate", "--scrape-interval", "0.2",
            "--output-dir", str(output_dir), "--run-id", "run", "--no-progress"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary: dict[str, Any] = orjson.loads((output_dir / "run" / "summary.json").read_bytes())
    return summary


def assert_vllms_series_are_mapped_and_shown(summary: dict[str, Any], directory: Path) -> None:
    """vLLM's own queue, KV-cache and prefix-cache series in every step, its latency histograms, and the report."""
    scraped = summary["server_metrics"]
    assert scraped["failed"] == 0 and scraped["sources"] == VLLM_SOURCES
    # A gauge is a sample and a ratio of counters needs traffic between two scrapes: which values a step's few
    # scrapes catch is timing, so each step must carry every series, and the whole run must have seen the load.
    for step in [*summary["steps"], summary["overall"]]:
        server = step["server"]
        assert server is not None, step.get("label")
        assert server["running"]["samples"] >= 1 and server["waiting"]["samples"] >= 1
        assert 0 <= server["kv_cache_usage"]["max"] <= 1 and server["preemptions"] == 0
        rate = server["prefix_cache_hit_rate"]
        assert rate is None or 0 <= rate <= 1
    overall = summary["overall"]["server"]
    assert overall["running"]["max"] >= 1 and 0 < overall["kv_cache_usage"]["max"] <= 1
    assert overall["prefix_cache_hit_rate"] is not None
    assert overall["generation_tokens_per_s"] > 0 and overall["ttft_ms"]["count"] > 0
    assert overall["queue_time_ms"]["count"] > 0 and overall["e2e_ms"]["count"] > 0
    page = build_report([directory]).html.read_text(encoding="utf-8")
    assert '<section id="server"><h2>Server</h2>' in page
    assert "kv_cache_usage ← vllm:kv_cache_usage_perc" in page and "waiting ← vllm:num_requests_waiting" in page
    assert page.count("data:image/png;base64,") == 5  # the server's timeline beside the run's four figures
