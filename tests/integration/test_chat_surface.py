"""The chat surface beyond plain text, through real HTTP on the simulator: output limits, stop lists, n, logprobs,
structured outputs, tools and reasoning (issue 17)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from reference_server.server import RunningServer
from tests.integration.conftest import MODEL, auth

USER = [{"role": "user", "content": "Tell me about the weather."}]


async def post(
    http: aiohttp.ClientSession, server: RunningServer, path: str, body: dict[str, Any], status: int = 200
) -> Any:
    async with http.post(f"{server.base_url}/v1/{path}", json=body, headers=auth()) as r:
        assert r.status == status, await r.text()
        return await r.json()


@pytest.mark.parametrize("limits", [{"max_completion_tokens": 5}, {"max_tokens": 9, "max_completion_tokens": 5}])
async def test_max_completion_tokens_limits_the_output(
    server: RunningServer, http: aiohttp.ClientSession, limits: dict[str, int]
) -> None:
    body = await post(http, server, "chat/completions", {"model": MODEL, "messages": USER, "min_tokens": 50, **limits})
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"
