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
    """Two short closed-loop steps with the metrics scraped every half second; the run's summary."""
    argv = [sys.executable, "-m", "harness", "bench", "--base-url", base_url, "--api-key", key, "--model", model,
            "--profile", profile, "--sweep-concurrency", "2,6", "--requests", "6", "--warmup", "0",
            "--input-tokens", "32", "--output-tokens", "8", "--no-calibrate", "--scrape-interval", "0.5",
            "--output-dir", str(output_dir), "--run-id", "run", "--no-progress"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary: dict[str, Any] = orjson.loads((output_dir / "run" / "summary.json").read_bytes())
    return summary


def assert_vllms_series_are_mapped_and_shown(summary: dict[str, Any], directory: Path) -> None:
    """vLLM's own queue, KV-cache and prefix-cache series, and its latency histograms, in every step and the report."""
    scraped = summary["server_metrics"]
    assert scraped["failed"] == 0 and scraped["sources"] == VLLM_SOURCES
    for step in summary["steps"]:
        server = step["server"]
        assert server is not None, step["label"]
        assert server["running"]["max"] >= 1 and server["waiting"] is not None
        assert 0 < server["kv_cache_usage"]["max"] <= 1
        assert server["prefix_cache_hit_rate"] is not None and 0 <= server["prefix_cache_hit_rate"] <= 1
        assert server["preemptions"] == 0
        assert server["generation_tokens_per_s"] > 0 and server["ttft_ms"]["count"] > 0
        assert server["queue_time_ms"]["count"] > 0 and server["e2e_ms"]["count"] > 0
    page = build_report([directory]).html.read_text(encoding="utf-8")
    assert '<section id="server"><h2>Server</h2>' in page
    assert "kv_cache_usage ← vllm:kv_cache_usage_perc" in page and "waiting ← vllm:num_requests_waiting" in page
    assert page.count("data:image/png;base64,") == 5  # the server's timeline beside the run's four figures
