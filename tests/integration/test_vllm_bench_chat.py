"""The chat output limit on the vllm engine, end to end: `max_completion_tokens` through the reference server, and
`vllm bench serve --backend openai-chat` (which sends only that field) completing against it.

Before issue 17 the server ignored the field: a request for 5 tokens got 27, and vllm bench serve with
`--ignore-eos` ran 30 requests towards the context limit without one finishing. One server for the module, in the
openai profile: vllm bench serve reads `usage` only from the trailing chunk that `stream_options.include_usage`
asks for (otherwise it re-tokenizes the text, which need not give the count the server produced).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchmarks.support.peers import VLLM_BENCH
from harness.target.launch import LaunchedServer, launch_reference_server
from reference_server.engines.embedded_model import ensure_embedded_model

pytestmark = pytest.mark.vllm

ENGINE_ARGS = ["--max-model-len", "2048", "--enforce-eager"]
PROMPTS = 60
OUTPUT_TOKENS = 64


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedServer]:
    log = tmp_path_factory.mktemp("vllm-chat-server") / "server.log"
    with launch_reference_server(
        engine="vllm", profile="openai", extra_args=ENGINE_ARGS, startup_timeout_s=1200, log_path=log
    ) as server:
        yield server


async def post_chat(server: LaunchedServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The response, or the stream's chunks, as JSON objects."""
    t = server.target
    headers = {"Authorization": f"Bearer {t.api_key}"}
    messages = [{"role": "user", "content": "Write a long story about a dragon."}]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{t.base_url}/chat/completions", headers=headers, json={"model": t.model, "messages": messages, **body}
        ) as r,
    ):
        assert r.status == 200, await r.text()
        if not body.get("stream"):
            return [await r.json()]
        events = (await r.text()).split("\n\n")
    return [json.loads(e.removeprefix("data: ")) for e in events if e.startswith("data: {")]


async def test_max_completion_tokens_limits_the_output_and_wins_over_max_tokens(vllm_server: LaunchedServer) -> None:
    (response,) = await post_chat(vllm_server, {"max_completion_tokens": 5, "max_tokens": 40, "temperature": 0})
    assert response["usage"]["completion_tokens"] == 5
    assert response["choices"][0]["finish_reason"] == "length"

    chunks = await post_chat(
        vllm_server,
        {"max_completion_tokens": 5, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"


def test_vllm_bench_serve_openai_chat_completes_with_exactly_the_output_it_asked_for(
    vllm_server: LaunchedServer, tmp_path: Path
) -> None:
    t = vllm_server.target
    argv = [
        *VLLM_BENCH.command(),
        "--backend", "openai-chat",
        "--base-url", t.root_url,
        "--endpoint", "/v1/chat/completions",
        "--model", t.model,
        "--tokenizer", str(ensure_embedded_model()),
        "--dataset-name", "random",
        "--random-input-len", "128",
        "--random-output-len", str(OUTPUT_TOKENS),
        "--ignore-eos",
        "--max-concurrency", "30",
        "--num-prompts", str(PROMPTS),
        "--seed", "0",
        "--disable-tqdm",
        "--save-result", "--save-detailed",
        "--result-dir", str(tmp_path),
        "--result-filename", "result.json",
    ]  # fmt: skip
    env = VLLM_BENCH.environment(OPENAI_API_KEY=t.api_key)
    # Bounded: the unbounded requests of the bug would run for many minutes; these take well under one.
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["completed"], result["failed"]) == (PROMPTS, 0)
    assert result["total_output_tokens"] == PROMPTS * OUTPUT_TOKENS
    assert result["output_lens"] == [OUTPUT_TOKENS] * PROMPTS
