"""The SSE reader and framing judge of the conformance suite."""

from __future__ import annotations

import pytest

from harness.conformance.events import StreamReply, data_payloads, framing_problems

GOOD = b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: [DONE]\n\n'


def reply(raw: bytes) -> StreamReply:
    return StreamReply(200, {"Content-Type": "text/event-stream"}, raw, 0.0)


def test_a_well_framed_stream_has_no_problems_and_keep_alive_comments_are_allowed() -> None:
    assert framing_problems(GOOD) == []
    assert framing_problems(b": keep-alive\n\n" + GOOD) == []


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'data: {"a": 1}\n\n', "does not end with `data: [DONE]`"),
        (GOOD + b"data: [DONE]\n\n", "sent 2 times"),
        (b'data: [DONE]\n\ndata: {"a": 1}\n\n', "not the last event"),
        (b'data: {"a": 1}\ndata: [DONE]\n\n', "2 data lines"),
        (b'event: chunk\ndata: {"a": 1}\n\ndata: [DONE]\n\n', "not `data: …`"),
        (b'data:{"a": 1}\n\ndata: [DONE]\n\n', "not `data: …`"),
        (b'data: {"a": \n\ndata: [DONE]\n\n', "is not JSON"),
        (b'data: {"a": 1}\n\ndata: [DONE]\n', "does not end with a blank line"),
        (b"", "empty"),
    ],
)
def test_each_framing_defect_is_named(raw: bytes, problem: str) -> None:
    assert any(problem in p for p in framing_problems(raw)), framing_problems(raw)


def test_the_lenient_reader_follows_the_sse_standard() -> None:
    raw = b': hi\r\nevent: x\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata:[DONE]\r\n\r\n'
    assert data_payloads(raw) == ['{"a":\n1}', "[DONE]"]
    assert data_payloads(b"data: tail") == ["tail"]


def test_chunks_stop_at_the_first_done_and_refuse_what_is_not_json() -> None:
    assert reply(GOOD + b'data: {"a": 3}\n\n').chunks() == [{"a": 1}, {"a": 2}]
    with pytest.raises(AssertionError, match="chunk 1 is not JSON"):
        reply(b'data: {"a": 1}\n\ndata: {oops\n\n').chunks()
    with pytest.raises(AssertionError, match="no chunks"):
        reply(b"data: [DONE]\n\n").chunks()
