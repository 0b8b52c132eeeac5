"""The reference server on the vllm engine with the embedded model: the exact contract on real generation.

One server for the module (engine start takes a minute or two on a CPU). The conformance suite runs against it
in full — shapes, streaming, prompt formatting, errors and the 30-limit on real streams — and the tests here add
what only the engine can show: aborts reaching vLLM, and usage equal to the tokenizer's counts.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

import schemas
from harness.conformance import matrix
from harness.target.launch import LaunchedServer, launch_reference_server
from tests.integration.held_up import request_while_stopped
from tests.integration.vllm_telemetry import assert_vllms_series_are_mapped_and_shown, scraped_bench

pytestmark = pytest.mark.vllm

ENGINE_ARGS = ["--max-model-len", "2048", "--enforce-eager"]
VLLM_COLUMN = "reference server, vLLM engine"


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedServer]:
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with launch_reference_server(engine="vllm", extra_args=ENGINE_ARGS, startup_timeout_s=1200, log_path=log) as s:
        yield s


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_the_conformance_suite_passes_on_the_vllm_engine(vllm_server: LaunchedServer, tmp_path: Path) -> None:
    t = vllm_server.target
    argv = [
        sys.executable,
        "-m",
        "harness.cli",
        "check",
        "--base-url",
        t.base_url,
        "--api-key",
        t.api_key,
        "--api-key-2",
        str(t.api_key_2),
        "--model",
        t.model,
        "--release-timeout",
        "60",
        "--output-dir",
        str(tmp_path),
        "-q",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
    result = json.loads((tmp_path / "result.json").read_text())
    failed = [c for c in result["checks"] if c["outcome"] != "passed"]
    assert done.returncode == 0 and not failed, done.stdout[-4000:] + done.stderr[-2000:]
    assert len(result["checks"]) >= 80
    assert {f["status"] for f in result["features"].values()} == {"offered"}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert matrix.readme_column(readme, VLLM_COLUMN) == matrix.column(result), (
        "regenerate the README's column: python -m harness.conformance.matrix --readme README.md "
        + shlex.quote(f"{VLLM_COLUMN}={tmp_path / 'result.json'}")
    )


async def test_a_disconnect_storm_leaves_vllm_with_nothing_running_or_waiting(vllm_server: LaunchedServer) -> None:
    """Clients that go away mid-stream, many at once (the hardening issue's storm, short): every engine request
    is aborted, vLLM's scheduler ends with nothing running or waiting, and every slot is free."""
    storm = 12
    t = vllm_server.target
    headers = {"Authorization": f"Bearer {t.api_key}"}
    body = {"model": t.model, "prompt": "Once upon a time", "max_tokens": 1500, "ignore_eos": True, "stream": True}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{t.root_url}/metrics") as r:
            aborted_before = gauge(await r.text(), "llm_engine_aborted_requests")
        responses = await asyncio.gather(
            *(http.post(f"{t.base_url}/completions", json=body, headers=headers) for _ in range(storm))
        )
        assert all(r.status == 200 for r in responses)
        for response in responses:  # a few tokens each, so the requests run in vLLM's scheduler
            for _ in range(3):
                await response.content.readuntil(b"\n\n")
        for response in responses:
            response.close()
        async with asyncio.timeout(120):
            while True:
                async with http.get(f"{t.root_url}/metrics") as r:
                    text = await r.text()
                if (
                    gauge(text, "llm_engine_running_sequences") == 0
                    and gauge(text, "llm_engine_waiting_sequences") == 0
                    and gauge(text, 'llm_requests_in_flight{key="cli-1"}') == 0
                ):
                    break
                await asyncio.sleep(0.1)
    assert gauge(text, "llm_engine_aborted_requests") == aborted_before + storm


async def test_usage_is_the_engine_tokenizers_count_of_exactly_what_it_processed(
    vllm_server: LaunchedServer,
) -> None:
    from transformers import AutoTokenizer

    from reference_server.engines.embedded_model import ensure_embedded_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model())
    t = vllm_server.target
    messages = [{"role": "user", "content": "Name three colours."}]
    headers = {"Authorization": f"Bearer {t.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{t.base_url}/chat/completions",
            headers=headers,
            json={"model": t.model, "messages": messages, "max_tokens": 7, "temperature": 0, "ignore_eos": True},
        ) as r,
    ):
        chat = await r.json()
    rendered = schemas.render_chat("chatml", messages)
    assert rendered == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat["usage"]["prompt_tokens"] == len(tokenizer.encode(rendered, add_special_tokens=False))
    assert chat["usage"]["completion_tokens"] == 7 and chat["choices"][0]["finish_reason"] == "length"


def test_traces_take_arrivals_from_the_kernel_on_the_vllm_engine_too(vllm_server: LaunchedServer) -> None:
    """AsyncLLM shares the server's loop (asyncio's, as launched): a request written while the server's process was
    stopped is traced from when it reached the socket, before the process could run again."""
    held = request_while_stopped(vllm_server)
    assert held.status == 200 and held.trace["received_by"] == "kernel"
    assert held.before_ns - 1_000_000 <= held.trace["received_ns"] < held.resumed_ns


def test_its_metrics_carry_vllms_own_series_which_a_run_maps_and_reports(
    vllm_server: LaunchedServer, tmp_path: Path
) -> None:
    """/metrics has vLLM's own families under vLLM's names beside the server's, /version names vLLM's release, and a
    scraped run shows vLLM's queue, KV-cache and prefix-cache series for every step."""
    t = vllm_server.target
    summary = scraped_bench(t.base_url, t.api_key, t.model, "anyscale", tmp_path)
    assert_vllms_series_are_mapped_and_shown(summary, tmp_path / "run")
    version = summary["environment"]["target"]["version"]
    assert version["engine"] == "vllm" and version["vllm"].startswith("0.")
