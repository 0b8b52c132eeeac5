"""The conformance suite against software nobody here wrote: vLLM's own OpenAI server on the embedded model.

What it reports is part of the project (README, "Against real peers"): vLLM's server passes the shapes, streaming,
prompt-format, SDK and chat-surface checks, and fails exactly these — it has no per-key concurrency limit, answers
401 with `{"error": "Unauthorized"}`, gives error `code`s as integers, does not serve `/v1/models/{id}`, and streams
a tool call's arguments as the model wrote them while the non-streamed response re-serialises them.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.conformance import matrix
from harness.target.launch import launch_vllm_openai_server, new_key
from reference_server.engines.embedded_model import SERVED_MODEL_ID, ensure_embedded_model
from tests.integration.vllm_telemetry import assert_vllms_series_are_mapped_and_shown, scraped_bench

pytestmark = pytest.mark.vllm
PEER_COLUMN = "vLLM's own server"

EXPECTED_FAILURES = {
    "test_missing_key",  # 401 body {"error": "Unauthorized"}: not the envelope
    "test_wrong_key",
    "test_unknown_model",  # error code 404 as an integer; /v1/models/{id} answers {"detail": "Not Found"}
    "test_invalid_request",  # error code 400 as an integer
    "test_model_retrieve",  # GET /v1/models/{id} is not served
    "test_limit_rejects_beyond_n",  # no per-key concurrency limit at all
    "test_limit_finished_request_frees_slot",
    "test_limit_disconnect_frees_slot",
    "test_limit_rejections_take_no_slot",
    "test_tool_stream",  # streamed arguments are the model's text, the non-streamed ones re-serialised JSON
}


@pytest.fixture(scope="module")
def vllm_openai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    key = new_key()
    # Tools as vLLM's documentation deploys them: SmolLM2's template writes Hermes <tool_call> blocks.
    engine_args = [
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        "--gpu-memory-utilization",
        "0.3",
        "--dtype",
        "float32",
    ]
    log = tmp_path_factory.mktemp("vllm-openai") / "server.log"
    with launch_vllm_openai_server(ensure_embedded_model(), SERVED_MODEL_ID, key, engine_args, log_path=log) as root:
        yield f"{root}/v1", key


def test_the_suite_finds_exactly_vllms_known_departures_from_the_contract(
    vllm_openai_server: tuple[str, str], tmp_path: Path
) -> None:
    base_url, key = vllm_openai_server
    argv = [
        sys.executable,
        "-m",
        "harness",
        "check",
        "--base-url",
        base_url,
        "--api-key",
        key,
        "--model",
        SERVED_MODEL_ID,
        "--profile",
        "openai",
        "--release-timeout",
        "60",
        "--output-dir",
        str(tmp_path),
        "-q",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
    result = json.loads((tmp_path / "result.json").read_text())
    failed = {c["check"] for c in result["checks"] if c["outcome"] != "passed"}
    passed = {c["check"] for c in result["checks"] if c["outcome"] == "passed"}
    assert done.returncode == 1
    assert failed == EXPECTED_FAILURES, done.stdout[-3000:]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert matrix.readme_column(readme, PEER_COLUMN) == matrix.column(result), (
        "regenerate the README's column: python -m harness.conformance.matrix --readme README.md "
        + shlex.quote(f"{PEER_COLUMN}={tmp_path / 'result.json'}")
    )
    assert {
        "test_stream_framing",
        "test_chunk_schema",
        "test_chat_matches_templated_completion",
        "test_completion_prompt_verbatim",
        "test_sdk_parses",
        "test_usage_arithmetic",
    } <= passed


def test_a_run_scrapes_vllms_own_metrics_and_reports_them(vllm_openai_server: tuple[str, str], tmp_path: Path) -> None:
    """vLLM's own server: its real `vllm:*` series scraped from its /metrics, mapped and shown; its /version and
    Server header in the run's environment."""
    base_url, key = vllm_openai_server
    summary = scraped_bench(base_url, key, SERVED_MODEL_ID, "openai", tmp_path)
    assert_vllms_series_are_mapped_and_shown(summary, tmp_path / "run")
    target = summary["environment"]["target"]
    assert target["server_header"] == "uvicorn" and target["version"]["version"].startswith("0.")
