"""The middlewares, each one concern: counting, fault plans, the error envelope, draining, authentication.

An application built as the server builds it, with a few routes of its own added, in process on a random port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from reference_server.app import build_app
from reference_server.auth import KeyRing
from reference_server.config import ApiKey, ServerConfig, digest
from reference_server.engines.sim import SimEngine
from reference_server.errors import APIError
from reference_server.middleware import api_error
from reference_server.state import STATE, ServerState, request_key

KEY = "esecret_middleware_key_1234"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"key": request_key(request).name})


async def teapot(request: web.Request) -> web.Response:
    raise APIError(418, "I'm a teapot.", code="teapot", headers={"x-tea": "green"})


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


@pytest.fixture(params=[False, True], ids=["faults-off", "faults-on"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    config = ServerConfig(keys=(ApiKey("team", digest(KEY)),), enable_faults=request.param)
    app = build_app(config, SimEngine(config.models, config.sim), KeyRing(config.keys))
    app.router.add_get("/v1/whoami", whoami)
    app.router.add_get("/v1/teapot", teapot)
    app.router.add_get("/health/teapot", teapot)
    app.router.add_get("/v1/boom", boom)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def state(client: TestClient[web.Request, web.Application]) -> ServerState:
    assert client.app is not None
    return client.app[STATE]


def counted(client: TestClient[web.Request, web.Application], endpoint: str, status: int) -> float:
    sample = state(client).metrics.registry.get_sample_value(
        "llm_requests_total", {"endpoint": endpoint, "status": str(status)}
    )
    return sample or 0.0


async def test_api_paths_need_a_key_and_get_its_name(client: TestClient[web.Request, web.Application]) -> None:
    refused = await client.get("/v1/whoami")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert (await refused.json())["error"]["code"] == "invalid_api_key"
    served = await client.get("/v1/whoami", headers=AUTH)
    assert served.status == 200 and await served.json() == {"key": "team"}
    assert (await client.get("/health")).status == 200  # no key needed
    assert counted(client, "/v1/whoami", 401) == 1 and counted(client, "/v1/whoami", 200) == 1


async def test_every_error_is_answered_in_the_envelope(client: TestClient[web.Request, web.Application]) -> None:
    teapot = await client.get("/v1/teapot", headers=AUTH)
    assert teapot.status == 418 and teapot.headers["x-tea"] == "green"
    assert await teapot.json() == {
        "error": {"message": "I'm a teapot.", "type": "invalid_request_error", "param": None, "code": "teapot"}
    }
    bug = await client.get("/v1/boom", headers=AUTH)
    assert bug.status == 500 and (await bug.json())["error"]["type"] == "server_error"
    missing = await client.get("/nowhere")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    wrong_method = await client.post("/health")
    assert wrong_method.status == 405 and wrong_method.headers["Allow"] == "GET,HEAD"
    assert (await wrong_method.json())["error"]["code"] == "method_not_allowed"
    assert counted(client, "/v1/boom", 500) == 1 and counted(client, "unmatched", 404) == 1


async def test_a_draining_server_refuses_api_requests_before_their_key(
    client: TestClient[web.Request, web.Application],
) -> None:
    state(client).draining = True
    refused = await client.get("/v1/whoami", headers={"x-fault": "meltdown"})
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"]["code"] == "shutting_down"
    assert (await client.get("/health")).status == 200


def test_aiohttps_errors_map_to_api_errors_by_status() -> None:
    not_found = api_error(web.HTTPNotFound())
    assert (not_found.status, not_found.code) == (404, "not_found")
    not_allowed = api_error(web.HTTPMethodNotAllowed("POST", ["GET"]))
    assert (not_allowed.status, not_allowed.code, not_allowed.headers) == (405, "method_not_allowed", {"Allow": "GET"})
    too_large = api_error(web.HTTPRequestEntityTooLarge(max_size=10, actual_size=11))
    assert (too_large.status, too_large.code) == (413, "request_too_large")
    other = api_error(web.HTTPUnsupportedMediaType())
    assert (other.status, other.type, other.message) == (415, "invalid_request_error", "Unsupported Media Type")
    assert api_error(web.HTTPBadGateway()).type == "server_error"


async def test_the_fault_header_counts_only_when_faults_are_enabled(
    client: TestClient[web.Request, web.Application],
) -> None:
    enabled = state(client).config.enable_faults
    unknown = await client.get("/v1/whoami", headers={**AUTH, "x-fault": "meltdown"})
    assert unknown.status == (400 if enabled else 200)
    if enabled:
        assert (await unknown.json())["error"]["param"] == "x-fault"
    assert (await client.get("/health", headers={"x-fault": "meltdown"})).status == 200  # no key, no refusal
    let_in = await client.get("/v1/whoami", headers={"x-fault": "allow_missing_key"})
    assert let_in.status == (200 if enabled else 401)


async def test_not_envelope_answers_api_errors_in_plain_text(
    client: TestClient[web.Request, web.Application],
) -> None:
    enabled = state(client).config.enable_faults
    plain = await client.get("/v1/whoami", headers={"x-fault": "not_envelope"})
    assert plain.status == 401
    assert plain.content_type == ("text/plain" if enabled else "application/json")
    with_argument = await client.get("/v1/whoami", headers={"x-fault": "not_envelope:1"})
    assert with_argument.content_type == "application/json"
    teapot = await client.get("/health/teapot", headers={"x-fault": "not_envelope"})
    assert teapot.status == 418 and teapot.content_type == ("text/plain" if enabled else "application/json")
    # aiohttp's own errors are always enveloped.
    assert (await client.get("/nowhere", headers={"x-fault": "not_envelope"})).content_type == "application/json"
