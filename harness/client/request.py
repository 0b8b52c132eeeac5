"""What a request is, before any HTTP library sees it: the endpoint, the keys, the body and the headers.

Every process that sends the harness's requests builds them here — `harness bench`'s aiohttp client, the preflight's
urllib requests, and the Locust scenarios' gevent users — so that a request means the same whoever sends it. This
module imports no HTTP library (a gevent process must never load aiohttp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import fastjsonschema
import orjson

import schemas
from harness.records.outputs import OutputSpec
from schemas import Profile

Endpoint = Literal["chat", "completion"]
On429 = Literal["fail", "retry"]
PATHS: Mapping[Endpoint, str] = {"chat": "/chat/completions", "completion": "/completions"}
CHUNK_SCHEMAS: Mapping[Endpoint, str] = {"chat": "chat_chunk", "completion": "completion_chunk"}


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str  # how records, logs and reports name the key; the secret is never written anywhere
    secret: str


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str
    model: str
    endpoint: Endpoint = "chat"
    profile: Profile = "anyscale"
    on_429: On429 = "fail"
    max_retries: int = 8
    max_retry_wait_s: float = 30.0
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 30.0
    validate_chunks: bool = False
    trace_timing: bool = False
    read_bufsize: int = 1 << 20
    extra_body: Mapping[str, Any] | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()  # sent with every request, after (and over) the defaults
    output: OutputSpec | None = None  # structured outputs or tools every request asks for, checked in each answer

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + PATHS[self.endpoint]


def request_body(
    config: ClientConfig,
    messages: Sequence[Mapping[str, str]] | None,
    prompt: str | None,
    max_tokens: int | None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The JSON body of one streamed request; built once per prompt and reused."""
    body: dict[str, Any] = {"model": config.model, "stream": True, "stream_options": {"include_usage": True}}
    if config.endpoint == "chat":
        body["messages"] = list(messages) if messages is not None else [{"role": "user", "content": prompt or ""}]
    else:
        body["prompt"] = prompt or ""
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if config.output is not None:
        body.update(config.output.body())
    if config.extra_body:
        body.update(config.extra_body)
    if extra:
        body.update(extra)
    return orjson.dumps(body)


def exact_length_body(max_tokens: int | None) -> dict[str, Any]:
    """The sampling fields that make a vLLM-style server generate exactly `max_tokens` tokens."""
    return {} if max_tokens is None else {"ignore_eos": True, "min_tokens": max_tokens}


def request_headers(
    secret: str, *, trace_timing: bool = False, extra: Sequence[tuple[str, str]] = ()
) -> dict[str, str]:
    """The headers of a streamed request with one key: identity encoding (a compressed stream cannot be timed
    chunk by chunk), the ground-truth trace asked for when wanted, and the extra headers last (they win)."""
    headers = {
        "Authorization": f"Bearer {secret}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Accept-Encoding": "identity",
    }
    if trace_timing:
        headers["x-trace-timing"] = "1"
    headers.update(extra)
    return headers


def chunk_validator(profile: Profile, endpoint: Endpoint) -> Callable[[Any], Any]:
    """A compiled check of one streamed chunk against the profile's schema (raises on a chunk that breaks it)."""
    return fastjsonschema.compile(schemas.response_schema(profile, CHUNK_SCHEMAS[endpoint]))
