"""Server telemetry end to end: `harness bench` scrapes the reference server's simulator (started for the run) into
`server_metrics.jsonl`, the summary carries each step's server figures and the report its Server section; against a
server without `/metrics` the run goes on without scraping and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from harness.cli import main
from harness.records import server_metrics
from harness.report.build import build as build_report

from .strict_server import KEY as STRICT_KEY
from .strict_server import MODEL as STRICT_MODEL
from .strict_server import strict_server

MAX_NUM_SEQS = 8


def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, Path]:
    monkeypatch.delenv("ANYSCALE_BASE_URL", raising=False)
    monkeypatch.delenv("ANYSCALE_API_KEY", raising=False)
    code = main(["bench", "--output-dir", str(tmp_path), "--run-id", "run", "--no-progress", *argv])
    return code, tmp_path / "run"


def test_a_run_against_the_simulator_scrapes_it_and_reports_what_it_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, directory = bench(
        tmp_path, monkeypatch, "--sweep-concurrency", "4,16", "--duration", "1.5", "--warmup", "0.5",
        "--output-tokens", "24", "--input-tokens", "32", "--scrape-interval", "0.25", "--sim-arg=--ttft-ms=10",
        "--sim-arg=--itl-ms=5", f"--sim-arg=--max-num-seqs={MAX_NUM_SEQS}",
    )  # fmt: skip
    assert code == 0
    assert "server metrics: " in capsys.readouterr().err
    validator = jsonschema.Draft7Validator(schemas.load("server_metrics.json"))
    for line in (directory / server_metrics.SERVER_METRICS_FILE).read_bytes().splitlines():
        validator.validate(orjson.loads(line))
    summary: dict[str, Any] = orjson.loads((directory / "summary.json").read_bytes())
    scraped = summary["server_metrics"]
    assert scraped["failed"] == 0 and scraped["scrapes"] >= 10
    assert scraped["sources"] == {
        "running": "llm_engine_running_sequences",
        "waiting": "llm_engine_waiting_sequences",
        "generation_tokens": "llm_completion_tokens",
        "prompt_tokens": "llm_prompt_tokens",
        "prefix_cache_queries": "llm_prompt_tokens",
        "prefix_cache_hits": "llm_prompt_tokens_cached",
        "ttft": "llm_time_to_first_token_seconds",
        "e2e": "llm_request_duration_seconds",
    }
    four, sixteen = (step["server"] for step in summary["steps"])
    # Four users never fill the simulator's eight sequences: nothing waits. Sixteen do: the server runs at most
    # eight, and the client has more in flight than the server runs.
    assert four["waiting"]["max"] == 0 and four["running"]["max"] <= 4
    assert four["prefix_cache_hit_rate"] is not None and 0 <= four["prefix_cache_hit_rate"] <= 1
    assert sixteen["running"]["max"] <= MAX_NUM_SEQS < sixteen["client_in_flight"]
    for step in (four, sixteen):
        assert step["generation_tokens_per_s"] > 0 and step["client_output_tokens_per_s"] > 0
        assert step["ttft_ms"]["count"] > 0 and step["e2e_ms"]["count"] > 0
        assert step["kv_cache_usage"] is None and step["queue_time_ms"] is None  # the simulator exports neither
    environment = summary["environment"]
    assert environment["target"]["version"]["engine"] == "sim" and environment["client"]["cpus"] >= 1
    written = build_report([directory])
    page = written.html.read_text(encoding="utf-8")
    assert '<section id="server"><h2>Server</h2>' in page and page.count("data:image/png;base64,") == 5
    assert "### Server" in written.markdown.read_text(encoding="utf-8")


def test_a_server_without_metrics_is_run_without_scraping_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with strict_server() as strict:
        code, directory = bench(
            tmp_path, monkeypatch, "--base-url", strict.base_url, "--api-key", STRICT_KEY, "--model", STRICT_MODEL,
            "--profile", "openai", "--no-ignore-eos", "--no-calibrate", "--concurrency", "2", "--requests", "6",
            "--warmup", "0",
        )  # fmt: skip
    assert code == 0
    notice = (
        f"server metrics not scraped: {strict.root_url}/metrics did not answer with Prometheus text (HTTP 404); "
        "name the endpoint with --server-metrics URL"
    )
    assert f"note: {notice}" in capsys.readouterr().err
    assert not (directory / server_metrics.SERVER_METRICS_FILE).exists()
    summary: dict[str, Any] = orjson.loads((directory / "summary.json").read_bytes())
    assert "server_metrics" not in summary and all("server" not in step for step in summary["steps"])
    assert summary["config"]["server_metrics"] == {"url": None, "interval_s": 1.0, "notice": notice}
    assert summary["environment"]["target"]["models"] == [STRICT_MODEL, "strict/model-2"]
    page = build_report([directory]).html.read_text(encoding="utf-8")
    assert notice in page


def test_scraping_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, directory = bench(tmp_path, monkeypatch, "--concurrency", "2", "--requests", "4", "--warmup", "0",
                            "--output-tokens", "4", "--server-metrics", "none")  # fmt: skip
    assert code == 0
    assert not (directory / server_metrics.SERVER_METRICS_FILE).exists()
    summary: dict[str, Any] = orjson.loads((directory / "summary.json").read_bytes())
    assert summary["config"]["server_metrics"]["notice"] == "server metrics not scraped (--server-metrics none)"
