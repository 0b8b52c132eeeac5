"""`harness.records.stream` on its own: what `harness bench` and the Locust users share, fed bytes and times by hand."""

from __future__ import annotations

import orjson

from harness.records.outputs import OutputSpec
from harness.records.record import Record
from harness.records.sse import SSEParser
from harness.records.stream import StreamState, record_refusal

MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"


def completion_chunk(text: str, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, object] = {
        "id": f"{MODEL}-1",
        "object": "text_completion",
        "model": MODEL,
        "choices": [{"index": 0, "text": text, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def test_each_read_stamps_its_events_with_the_time_it_arrived() -> None:
    record = Record()
    state = StreamState(record, origin=1_000, validate=None, chat=False)
    parser = SSEParser()
    first = completion_chunk("Hel") + completion_chunk("lo")[:20]
    rest = completion_chunk("lo")[20:] + completion_chunk("!", "length", {"prompt_tokens": 4, "completion_tokens": 6})
    state.events(parser.feed(first), 5_000)
    state.events(parser.feed(rest + b"data: [DONE]\n\n"), 9_000)
    state.finish(parser.close(), 9_500)
    # The chunk split across reads counts from the read that completed it; times are relative to the origin.
    assert (record.first_token_ns, record.chunk_ns, record.end_ns) == (4_000, [4_000, 8_000, 8_000], 8_000)
    assert (record.prompt_tokens, record.completion_tokens, record.finish_reason) == (4, 6, "length")
    assert record.chunk_tokens == [3, 2, 1]  # six tokens spread over the chunks by their text length
    assert record.error_kind is None and record.conformance_error_count == 0
    assert record.request_id == f"{MODEL}-1"


def test_a_stream_cut_short_is_a_failure_at_the_time_it_ended() -> None:
    record = Record()
    state = StreamState(record, origin=0, validate=None, chat=False)
    parser = SSEParser()
    state.events(parser.feed(completion_chunk("a") + b"data: {"), 10)
    state.finish(parser.close(), 25)
    assert (record.error_kind, record.end_ns, record.chunk_ns) == ("disconnect", 25, [10])


def test_a_refused_request_keeps_the_envelope_message_and_retry_after() -> None:
    record = Record()
    envelope = {"error": {"message": "Too many concurrent requests", "type": "rate_limit_error", "code": None}}
    record_refusal(record, 429, orjson.dumps(envelope), "1")
    assert (record.error_kind, record.error_detail, record.retry_after_s) == (
        "rate_limited",
        "Too many concurrent requests",
        1.0,
    )


def test_a_refused_request_without_an_envelope_keeps_the_start_of_its_body() -> None:
    record = Record()
    record_refusal(record, 502, b"<html>Bad Gateway</html>", None)
    assert (record.error_kind, record.error_detail, record.retry_after_s) == (
        "http_5xx",
        "502: <html>Bad Gateway</html>",
        None,
    )


def chat_chunk(delta: dict[str, object], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, object] = {"id": "c-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def test_reasoning_chunks_are_tokens_and_the_first_output_comes_after_them() -> None:
    record = Record()
    state = StreamState(record, origin=0, validate=None, chat=True)
    parser = SSEParser()
    state.events(parser.feed(chat_chunk({"role": "assistant", "content": ""})), 5)
    state.events(parser.feed(chat_chunk({"reasoning_content": "Let me"})), 10)
    state.events(parser.feed(chat_chunk({"reasoning": " think"})), 20)  # vLLM's newer name
    state.events(parser.feed(chat_chunk({"content": "Yes"})), 30)
    state.events(parser.feed(chat_chunk({"reasoning_content": " again"})), 40)  # after the answer began: not leading
    done = chat_chunk({"content": "."}, "stop", {"prompt_tokens": 3, "completion_tokens": 5}) + b"data: [DONE]\n\n"
    state.events(parser.feed(done), 50)
    state.finish(parser.close(), 60)
    assert (record.first_token_ns, record.chunk_ns, record.reasoning_chunks) == (10, [10, 20, 30, 40, 50], 2)
    assert record.error_kind is None and record.output_error is None  # nothing was asked of the output


def test_tool_call_fragments_are_output_and_are_checked_once_reassembled() -> None:
    spec = OutputSpec(
        tools=({"type": "function", "function": {"name": "f"}},),
        tool_choice="required",
        _parameter_checks={"f": lambda value: value},
    )
    record = Record()
    state = StreamState(record, origin=0, validate=None, chat=True, output=spec)
    parser = SSEParser()
    start = {
        "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]
    }
    state.events(parser.feed(chat_chunk(start)), 10)
    state.events(parser.feed(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]})), 20)
    state.events(parser.feed(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})), 30)
    end = chat_chunk({}, "tool_calls", {"prompt_tokens": 3, "completion_tokens": 4}) + b"data: [DONE]\n\n"
    state.events(parser.feed(end), 40)
    state.finish(parser.close(), 50)
    assert (record.first_token_ns, record.chunk_ns, record.reasoning_chunks) == (10, [10, 20, 30], 0)
    assert record.output_error == ""  # checked, and fine


def test_a_broken_json_answer_is_an_output_error() -> None:
    spec = OutputSpec(response_format={"type": "json_object"})
    record = Record()
    state = StreamState(record, origin=0, validate=None, chat=True, output=spec)
    parser = SSEParser()
    state.events(parser.feed(chat_chunk({"content": '{"a": 1}'})), 10)
    end = chat_chunk({"content": " ok"}, "stop", {"prompt_tokens": 3, "completion_tokens": 4}) + b"data: [DONE]\n\n"
    state.events(parser.feed(end), 20)
    state.finish(parser.close(), 30)
    assert record.error_kind is None and record.output_error is not None
    assert record.output_error.startswith("the content is not JSON")
