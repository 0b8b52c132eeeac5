"""Streamed responses: content type, SSE framing, chunk shapes, one identity, role, finish reason, usage, text."""

from __future__ import annotations

from typing import Any

import pytest

from harness.conformance.contract import Contract, Kind
from harness.conformance.events import StreamReply, framing_problems
from harness.conformance.fixtures import Exchanges, delta_text, text_of

__all__ = [
    "test_chunk_schema",
    "test_one_finish_reason",
    "test_role_first",
    "test_stream_content_type",
    "test_stream_framing",
    "test_stream_identity",
    "test_stream_text",
    "test_stream_usage",
]


@pytest.mark.streaming
def test_stream_content_type(streamed: StreamReply) -> None:
    """A stream is sent as `text/event-stream`."""
    assert streamed.status == 200, f"HTTP {streamed.status}: {streamed.raw[:300]!r}"
    assert streamed.content_type == "text/event-stream", f"Content-Type is {streamed.content_type!r}"


@pytest.mark.streaming
def test_stream_framing(streamed: StreamReply) -> None:
    """`data: ` lines, one event per blank-line-separated block, `[DONE]` last and only once."""
    assert streamed.status == 200, f"HTTP {streamed.status}: {streamed.raw[:300]!r}"
    assert not (problems := framing_problems(streamed.raw)), f"the stream is badly framed: {problems}"


@pytest.mark.streaming
def test_chunk_schema(streamed: StreamReply, contract: Contract, kind: Kind) -> None:
    """Every chunk validates against the profile's chunk schema."""
    obj = contract.chunk_object(kind)
    for n, chunk in enumerate(streamed.chunks()):
        problems = contract.errors(obj, chunk)
        assert not problems, f"profile {contract.profile}: chunk {n} breaks {obj}.json: {problems}"


@pytest.mark.streaming
def test_stream_identity(streamed: StreamReply) -> None:
    """All chunks of a stream share one `id` and one `created`."""
    chunks = streamed.chunks()
    for field in ("id", "created"):
        values = {repr(c.get(field)) for c in chunks}
        assert len(values) == 1, f"the chunks of one stream carry {len(values)} values of {field}: {sorted(values)}"


@pytest.mark.streaming
@pytest.mark.parametrize("kind", ["chat"])
def test_role_first(streamed: StreamReply) -> None:
    """A chat stream opens with the assistant role (a completion stream has no roles)."""
    chunks = streamed.chunks()
    first = chunks[0]["choices"][0].get("delta") or {}
    assert first.get("role") == "assistant", f"the first chunk's delta is {first!r}, without the assistant role"
    later = [n for n, c in enumerate(chunks[1:], 1) for ch in c["choices"] if (ch.get("delta") or {}).get("role")]
    assert not later, f"chunks {later} repeat the role"


@pytest.mark.streaming
def test_one_finish_reason(streamed: StreamReply) -> None:
    """Exactly one chunk carries a finish_reason."""
    finishing = [
        (n, choice.get("finish_reason"))
        for n, chunk in enumerate(streamed.chunks())
        for choice in chunk.get("choices") or []
        if choice.get("finish_reason") is not None
    ]
    assert len(finishing) == 1, f"chunks with a finish_reason: {finishing}"


def _counts(usage: Any) -> tuple[Any, Any]:
    return (usage.get("prompt_tokens"), usage.get("completion_tokens")) if isinstance(usage, dict) else (None, None)


@pytest.mark.streaming
def test_stream_usage(exchanges: Exchanges, contract: Contract, kind: Kind) -> None:
    """Usage is where the profile puts it, with the counts of the same request non-streamed.

    anyscale: on the last chunk, the one with the finish_reason, and nowhere else. openai: nowhere unless
    `stream_options.include_usage` asks for it; then in one last chunk with no choices, and null before it.
    """
    expected = _counts(exchanges.body_of(kind).get("usage"))
    if contract.profile == "anyscale":
        chunks = exchanges.stream(kind).chunks()
        carrying = [n for n, c in enumerate(chunks) if c.get("usage") is not None]
        assert carrying == [len(chunks) - 1], (
            f"profile anyscale: usage belongs on the last chunk only, is on {carrying}"
        )
        last = chunks[-1]
        assert any(ch.get("finish_reason") for ch in last["choices"]), "profile anyscale: the usage chunk must finish"
    else:
        plain = exchanges.stream(kind).chunks()
        carrying = [n for n, c in enumerate(plain) if c.get("usage") is not None]
        assert not carrying, f"profile openai: usage was not asked for but chunks {carrying} carry it"
        chunks = exchanges.stream(kind, include_usage=True).chunks()
        carrying = [n for n, c in enumerate(chunks) if c.get("usage") is not None]
        assert carrying == [len(chunks) - 1], f"profile openai: with include_usage, usage is on chunks {carrying}"
        last = chunks[-1]
        assert last.get("choices") == [], f"profile openai: the usage chunk must have no choices: {last!r}"
    got = _counts(last["usage"])
    assert got == expected, f"streamed usage (prompt, completion) {got} != non-streamed {expected}"


@pytest.mark.streaming
def test_stream_text(exchanges: Exchanges, streamed: StreamReply, kind: Kind) -> None:
    """At temperature 0 the concatenated deltas are the non-streamed text."""
    expected = text_of(kind, exchanges.body_of(kind))
    got = delta_text(kind, streamed.chunks())
    assert got == expected, f"streamed text {got[:200]!r} differs from the non-streamed {expected[:200]!r}"
