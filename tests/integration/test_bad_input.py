"""Bad input that `test_errors` does not cover: duplicate keys, infinities, huge strings and arrays, a body that
never finishes, and what aiohttp's HTTP parser rejects before the application sees it (a request line or header
over the limit, too many headers, a request line that is not HTTP). Each gets a 4xx in the OpenAI envelope, and
the server keeps serving.

Requests that no HTTP client library would send are written on a raw socket.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import jsonschema
import pytest

import schemas
from reference_server.openapi import openapi_document
from reference_server.server import MAX_HEADER_FIELD_BYTES, MAX_REQUEST_LINE_BYTES, RunningServer
from reference_server.state import STATE
from tests.integration.conftest import KEY, MODEL, ServerFactory, auth

CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
ERROR_SCHEMA = schemas.response_schema("anyscale", "error")


async def raw_exchange(server: RunningServer, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Write `data` on a new connection and read one response (its body by Content-Length)."""
    host, port = server.runner.addresses[0][:2]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").strip().split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
            body = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
    return int(status_line.split()[1]), headers, body


def envelope(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"].startswith("application/json")
    parsed: dict[str, Any] = json.loads(body)
    jsonschema.validate(parsed, ERROR_SCHEMA)
    error: dict[str, Any] = parsed["error"]
    return error


async def still_serving(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.base_url}/v1/chat/completions", json=CHAT, headers=auth()) as r,
    ):
        assert r.status == 200, await r.text()
    assert server.runner.app[STATE].limiter.snapshot() == {"first": 0}


async def post(server: RunningServer, body: bytes) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.base_url}/v1/chat/completions",
            data=body,
            headers={**auth(), "Content-Type": "application/json"},
        ) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_duplicate_keys_last_one_wins(server: RunningServer) -> None:
    # Documented behaviour (RFC 8259 leaves duplicates to the implementation): the last occurrence is used, as by
    # orjson, Python's json and JavaScript's JSON.parse. Rejecting them would need a second, slower parse of every body.
    chat = json.dumps(CHAT)[1:]
    status, body = await post(server, b'{"model": "no/such-model", ' + chat.encode())
    assert status == 200 and body["model"] == MODEL
    status, body = await post(server, b"{" + chat.encode()[:-1] + b', "model": "no/such-model"}')
    assert status == 404 and body["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("fragment", "param"),
    [
        (b'"temperature": Infinity', None),  # not JSON
        (b'"temperature": -Infinity', None),
        (b'"temperature": 1e999', None),  # a number that only fits a double as infinity
        (b'"max_tokens": 1e999', None),
        (b'"seed": -9223372036854775809', "seed"),  # one past the 64-bit range: the parser would round it in
        (b'"seed": 18446744073709551616', "seed"),
        (b'"presence_penalty": -1e308', "presence_penalty"),
    ],
)
async def test_numbers_out_of_range_and_infinities_are_400(server: RunningServer, fragment: bytes, param: str) -> None:
    status, body = await post(server, json.dumps(CHAT).encode()[:-1] + b", " + fragment + b"}")
    assert status == 400, body
    jsonschema.validate(body, ERROR_SCHEMA)
    if param is not None:
        assert body["error"]["param"] == param
    await still_serving(server)


@pytest.mark.parametrize(
    ("field", "value", "param", "code"),
    [
        ("messages", [{"role": "user", "content": "hi"}] * 5000, "messages", None),  # more items than allowed
        ("stop", ["x"] * 17, "stop", None),
        ("stop", "x" * 2000, "stop", None),
        ("messages", [{"role": "user", "content": "word " * 200_000}], "messages", "context_length_exceeded"),
    ],
)
async def test_huge_strings_and_arrays_within_the_body_limit_are_400(
    server: RunningServer, field: str, value: Any, param: str, code: str | None
) -> None:
    status, body = await post(server, json.dumps({**CHAT, field: value}).encode())
    assert status == 400, body
    assert body["error"]["param"] == param and body["error"]["code"] == code
    await still_serving(server)


async def test_a_body_that_never_finishes_is_408_and_frees_the_slot(server_factory: ServerFactory) -> None:
    async with server_factory(body_timeout_s=0.3) as server:
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n"
        )
        # The answer comes while the body is still owed; the connection is closed after it (once aiohttp's
        # lingering close has given the client a moment to stop sending), never reused.
        status, headers, body = await raw_exchange(server, head.encode() + b'{"model": ')
        assert status == 408 and headers["connection"] == "close"
        assert envelope(headers, body)["code"] == "timeout"
        await still_serving(server)


@pytest.mark.parametrize(
    ("request_head", "status", "code"),
    [
        (
            f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * (MAX_HEADER_FIELD_BYTES + 10)}\r\n\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (
            # The key is in the oversized header: the answer must not quote it (aiohttp's own answer would).
            f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}{'a' * MAX_HEADER_FIELD_BYTES}\r\n\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (
            "GET /v1/models HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-H{i}: v\r\n" for i in range(200)) + "\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (f"GET /v1/models?q={'a' * MAX_REQUEST_LINE_BYTES} HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        ("NOT A REQUEST\r\n\r\n", 400, "bad_request_line"),
        ("GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", 400, "bad_http_request"),
        ("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400, "bad_http_request"),
    ],
)
async def test_what_the_http_parser_rejects_comes_back_in_the_envelope(
    server: RunningServer, request_head: str, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    got, headers, body = await raw_exchange(server, request_head.encode())
    assert got == status
    error = envelope(headers, body)
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert KEY not in body.decode() and KEY not in caplog.text
    await still_serving(server)


def test_the_document_states_the_limits_the_server_enforces() -> None:
    described = openapi_document()["info"]["description"]
    assert f"request line over {MAX_REQUEST_LINE_BYTES // 1024} KiB (414)" in described
    assert f"header over {MAX_HEADER_FIELD_BYTES // 1024} KiB or too many headers (431)" in described
