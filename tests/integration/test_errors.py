"""Every bad input gets the OpenAI error envelope with the right status, and the server keeps serving."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import jsonschema
import pytest

import schemas
from reference_server.server import RunningServer
from tests.integration.conftest import MODEL, ServerFactory, auth

JSON = {"Content-Type": "application/json"}
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}


async def call(
    http: aiohttp.ClientSession,
    server: RunningServer,
    method: str,
    path: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    async with http.request(method, f"{server.base_url}{path}", data=data, headers=headers) as r:
        body = await r.json(content_type=None)
        jsonschema.validate(body, schemas.response_schema("anyscale", "error"))
        return r.status, body["error"]


def chat_with(**fields: Any) -> bytes:
    return json.dumps({**CHAT, **fields}).encode()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None),  # invalid UTF-8
        (b"[" * 5000 + b"]" * 5000, None),  # nesting deeper than any parser should follow
        (b'{"model": "x", "messages": [], "temperature": NaN}', None),
        (chat_with(temperature=2.5), "temperature"),
        (chat_with(temperature="hot"), "temperature"),
        (chat_with(top_p=1.5), "top_p"),
        (chat_with(max_tokens=0), "max_tokens"),
        (chat_with(max_tokens=-3), "max_tokens"),
        (chat_with(n=17), "n"),
        (chat_with(messages=[]), "messages"),
        (chat_with(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (chat_with(messages=[{"content": "x"}]), "messages[0].role"),
        (chat_with(messages="Hi"), "messages"),
        (chat_with(stream="yes"), "stream"),
        (chat_with(stop=[1, 2]), "stop"),
        (b'{"messages": [{"role": "user", "content": "Hi"}]}', "model"),
        (chat_with(max_tokens=10**30), None),  # an integer beyond 64 bits
    ],
)
async def test_malformed_requests_get_400_with_the_parameter(
    server: RunningServer, http: aiohttp.ClientSession, body: bytes, param: str | None
) -> None:
    status, error = await call(http, server, "POST", "/v1/chat/completions", data=body, headers={**auth(), **JSON})
    assert status == 400, error
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param
    assert (await call_ok(http, server)) == 200


async def call_ok(http: aiohttp.ClientSession, server: RunningServer) -> int:
    async with http.post(f"{server.base_url}/v1/chat/completions", json={**CHAT, "max_tokens": 2}, headers=auth()) as r:
        return r.status


async def test_context_overflow_names_both_numbers(server: RunningServer, http: aiohttp.ClientSession) -> None:
    status, error = await call(
        http, server, "POST", "/v1/chat/completions", data=chat_with(max_tokens=8190), headers={**auth(), **JSON}
    )
    assert status == 400 and error["code"] == "context_length_exceeded"
    assert "8192" in error["message"] and "8190" in error["message"]


async def test_roles_the_template_rejects_are_400(server_factory: ServerFactory, http: aiohttp.ClientSession) -> None:
    mistral = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    async with server_factory(models=(mistral,)) as server:
        body = chat_with(model=mistral, messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
        status, error = await call(http, server, "POST", "/v1/chat/completions", data=body, headers={**auth(), **JSON})
    assert status == 400 and error["param"] == "messages" and "alternate" in error["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer esecret_wrong"}, 401), ({"Authorization": "Basic abc"}, 401)],
)
async def test_missing_or_wrong_key_is_401(
    server: RunningServer, http: aiohttp.ClientSession, headers: dict[str, str], status: int
) -> None:
    code, error = await call(
        http, server, "POST", "/v1/chat/completions", data=chat_with(), headers={**headers, **JSON}
    )
    assert code == status and error["type"] == "authentication_error"
    code, _ = await call(http, server, "GET", "/v1/models", headers=headers)
    assert code == 401


async def test_unknown_model_unknown_path_wrong_method(server: RunningServer, http: aiohttp.ClientSession) -> None:
    status, error = await call(
        http, server, "POST", "/v1/chat/completions", data=chat_with(model="no/such"), headers={**auth(), **JSON}
    )
    assert (status, error["code"], error["param"]) == (404, "model_not_found", "model")
    status, error = await call(http, server, "GET", "/v1/models/no/such", headers=auth())
    assert status == 404
    status, _ = await call(http, server, "GET", "/v1/nothing-here", headers=auth())
    assert status == 404
    status, _ = await call(http, server, "GET", "/v1/chat/completions", headers=auth())
    assert status == 405


async def test_body_over_the_size_limit_is_413(server_factory: ServerFactory, http: aiohttp.ClientSession) -> None:
    async with server_factory(max_body_bytes=10_000) as server:
        huge = chat_with(messages=[{"role": "user", "content": "x" * 20_000}])
        status, error = await call(http, server, "POST", "/v1/chat/completions", data=huge, headers={**auth(), **JSON})
        assert status == 413 and error["code"] == "request_too_large"
        assert await call_ok(http, server) == 200


async def test_wrong_content_type_is_415(server: RunningServer, http: aiohttp.ClientSession) -> None:
    status, error = await call(
        http, server, "POST", "/v1/chat/completions", data=chat_with(), headers={**auth(), "Content-Type": "text/plain"}
    )
    assert status == 415 and error["param"] == "Content-Type"


async def test_unknown_fault_is_refused_only_when_faults_are_enabled(
    server_factory: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with server_factory(enable_faults=True) as server:
        status, error = await call(
            http,
            server,
            "POST",
            "/v1/chat/completions",
            data=chat_with(),
            headers={**auth(), **JSON, "x-fault": "nonsense"},
        )
        assert status == 400 and error["param"] == "x-fault"
    async with (
        server_factory() as server,  # faults off: the header means nothing
        http.post(
            f"{server.base_url}/v1/chat/completions",
            data=chat_with(max_tokens=2),
            headers={**auth(), **JSON, "x-fault": "error_500"},
        ) as r,
    ):
        assert r.status == 200
