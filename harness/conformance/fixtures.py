"""The suite's fixtures: the target, the HTTP client, the official SDK, and the requests many checks share.

A shared request is made once per session and checked by every check that reads it, so each check tests one
promise about the same response and a run stays short even against a slow endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from harness.conformance.contract import KINDS, PATHS, Contract, Kind, Settings
from harness.conformance.endpoint import Api, Reply
from harness.conformance.events import StreamReply
from harness.conformance.features import Features
from harness.conformance.launch import prepare
from harness.target.endpoint import Target

if TYPE_CHECKING:
    import openai


class Exchanges:
    """Requests made once and shared: the question at temperature 0, non-streamed and streamed, per kind."""

    def __init__(self, api: Api, contract: Contract) -> None:
        self.api = api
        self.contract = contract
        self._replies: dict[Kind, Reply] = {}
        self._streams: dict[tuple[Kind, bool], StreamReply] = {}

    def reply(self, kind: Kind) -> Reply:
        if kind not in self._replies:
            self._replies[kind] = self.api.post(PATHS[kind], self.contract.body(kind))
        return self._replies[kind]

    def stream(self, kind: Kind, include_usage: bool = False) -> StreamReply:
        """The same request streamed; `include_usage` asks for usage as the openai profile defines it."""
        if (kind, include_usage) not in self._streams:
            extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
            self._streams[kind, include_usage] = self.api.stream(PATHS[kind], self.contract.body(kind, **extra))
        return self._streams[kind, include_usage]

    def body_of(self, kind: Kind) -> dict[str, Any]:
        """The JSON of the shared non-streamed response, which must have succeeded."""
        reply = self.reply(kind)
        assert reply.status == 200, f"the {kind} request failed: {reply.describe()}"
        body = reply.json()
        assert isinstance(body, dict), f"the {kind} response is not a JSON object: {reply.describe()}"
        return body


def text_of(kind: Kind, body: dict[str, Any]) -> str:
    """The generated text of a non-streamed body."""
    choice = body["choices"][0]
    text = choice["message"]["content"] if kind == "chat" else choice["text"]
    assert isinstance(text, str), f"the {kind} text is not a string: {text!r}"
    return text


def delta_text(kind: Kind, chunks: list[dict[str, Any]]) -> str:
    """The streamed text: every chunk's delta content (chat) or text (completion), concatenated."""
    parts: list[str] = []
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") if kind == "chat" else choice.get("text")
            parts.append(piece or "")
    return "".join(parts)


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    return prepare(pytestconfig)


@pytest.fixture(scope="session")
def target(settings: Settings) -> Target:
    return settings.target


@pytest.fixture(scope="session")
def contract(settings: Settings) -> Contract:
    return Contract(settings)


@pytest.fixture(scope="session")
def api(settings: Settings) -> Iterator[Api]:
    client = Api(settings)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def exchanges(api: Api, contract: Contract) -> Exchanges:
    return Exchanges(api, contract)


@pytest.fixture(scope="session")
def features(api: Api, contract: Contract) -> Features:
    return Features(api, contract)


@pytest.fixture(scope="session")
def sdk(settings: Settings) -> Iterator[openai.OpenAI]:
    """The official client as the spec's examples use it, with no retries so that every answer is seen."""
    import openai  # only when an SDK check runs: it is slow to import

    client = openai.OpenAI(
        base_url=settings.target.base_url,
        api_key=settings.target.api_key,
        max_retries=0,
        timeout=settings.request_timeout_s,
        default_headers=dict(settings.extra_headers),
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> Kind:
    value: Kind = request.param
    return value


@pytest.fixture
def reply(exchanges: Exchanges, kind: Kind) -> dict[str, Any]:
    """The shared non-streamed response of this kind, as JSON."""
    return exchanges.body_of(kind)


@pytest.fixture
def streamed(exchanges: Exchanges, kind: Kind) -> StreamReply:
    return exchanges.stream(kind)
