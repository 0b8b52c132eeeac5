"""From a response to its record: the SSE events of a streamed answer, or the error body of a refused one.

Shared by every client that fills records — `harness.client.session` (aiohttp) and the Locust users in `scenarios/`
(gevent) — so that both turn the same bytes into the same fields. Nothing here does I/O or reads a clock: callers
pass the arrival time of each read.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
import orjson

from harness.records.outputs import Call, OutputSpec
from harness.records.record import Record, apportion
from harness.records.sse import DONE


def retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def record_refusal(record: Record, status: int, raw: bytes, retry_after: str | None) -> None:
    """A response that is not 200: its error kind, and the message of its error envelope when it has one."""
    message = raw[:300].decode("utf-8", "replace")
    try:
        envelope = orjson.loads(raw)
        message = str(envelope["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    if status == 429:
        record.retry_after_s = retry_after_s(retry_after)
        record.fail("rate_limited", message)
    else:
        record.fail("http_5xx" if status >= 500 else "http_4xx", f"{status}: {message}")


class StreamState:
    """What one streamed response has shown so far; turns into the record's fields in `finish`.

    Feed it the events of each read with the read's arrival time (`time.perf_counter_ns()`), in order, and what is
    known of that time: `kernel_timed` (the kernel's receive time, not the reader's clock), `early_ns` (how long
    before the stamp bytes of this read may have arrived, for certain), `woke_ns` (when known, the stamp less the
    wake-up that no byte of the read arrived sooner than, less the wake-up latency: see `harness.client.selector`), and
    `ends_read` (the last event ended where the read did, so it arrived with the read's last segment, at the stamp).
    """

    __slots__ = (
        "calls",
        "chars",
        "chat",
        "content",
        "done",
        "loop_timed",
        "origin",
        "output",
        "outputting",
        "record",
        "usage",
        "validate",
    )

    def __init__(
        self,
        record: Record,
        origin: int,
        validate: Callable[[Any], Any] | None,
        chat: bool,
        output: OutputSpec | None = None,
    ) -> None:
        self.record = record
        self.origin = origin
        self.validate = validate
        self.chat = chat
        self.output = output  # when set, the answer's text and tool calls are kept for its check at the end
        self.chars: list[int] = []
        self.content: list[str] = []
        self.calls: dict[int, Call] = {}
        self.outputting = False  # a chunk of output (not reasoning) has come
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.loop_timed: bool | None = None  # None until an event was timed

    def events(
        self,
        events: list[tuple[bytes, bytes]],
        at_ns: int,
        early_ns: int = 0,
        woke_ns: int | None = None,
        ends_read: bool = True,
        kernel_timed: bool = False,
    ) -> None:
        if not events:
            return
        record = self.record
        t = at_ns - self.origin
        if not kernel_timed:
            self.loop_timed = True
        elif self.loop_timed is None:
            self.loop_timed = False
        last = len(events) - 1
        for i, (name, data) in enumerate(events):
            early = 0 if i == last and ends_read else early_ns
            if self.done:
                record.fail("protocol_error", f"data after [DONE]: {data[:80]!r}")
                continue
            if data == DONE:
                self.done = True
                record.end_ns = t
                record.end_early_ns = (early, woke_ns) if early else ()
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                record.fail("protocol_error", f"an SSE event is not JSON: {data[:120]!r}")
                continue
            if not isinstance(chunk, dict):
                record.fail("protocol_error", f"an SSE event is not a JSON object: {data[:120]!r}")
                continue
            if name == b"error" or "error" in chunk:
                error = chunk.get("error")
                message = error.get("message") if isinstance(error, dict) else error
                record.fail("stream_error", f"error in stream: {message}")
                continue
            if self.validate is not None:
                record.chunks_validated += 1
                try:
                    self.validate(chunk)
                except fastjsonschema.JsonSchemaValueException as exc:
                    record.nonconformant(f"chunk {record.chunks_validated}: {exc.message}")
            self._chunk(chunk, t, early, woke_ns)

    def _chunk(self, chunk: dict[str, Any], t: int, early: int, woke: int | None) -> None:
        record = self.record
        if record.request_id is None and isinstance(chunk.get("id"), str):
            record.request_id = chunk["id"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        size, thinking = 0, False  # characters of tokens in this chunk; whether they were reasoning
        if self.chat:
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                size = len(text)
                if self.output is not None:
                    self.content.append(text)
            elif isinstance(delta, dict):
                size, thinking = self._other(delta)
        else:
            text = choice.get("text")
            if isinstance(text, str) and text:
                size = len(text)
                if self.output is not None:
                    self.content.append(text)
        if size:
            if record.first_token_ns is None:
                record.first_token_ns = t
            if early:
                record.chunk_early_ns = (*record.chunk_early_ns, (len(record.chunk_ns), early, woke))
            record.chunk_ns.append(t)
            self.chars.append(size)
            if not thinking:
                self.outputting = True
            elif not self.outputting:
                record.reasoning_chunks += 1
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            record.finish_reason = reason

    def _other(self, delta: dict[str, Any]) -> tuple[int, bool]:
        """A chat delta without content: its size in characters, and whether it is reasoning (else tool calls)."""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")  # vLLM's older and newer names
        if isinstance(reasoning, str) and reasoning:
            return len(reasoning), True
        calls = delta.get("tool_calls")
        if not isinstance(calls, list) or not calls:
            return 0, False
        size = 0
        for item in calls:
            if not isinstance(item, dict):
                continue
            raw = item.get("function")
            function: dict[str, Any] = raw if isinstance(raw, dict) else {}
            fragment = function.get("arguments")
            if isinstance(fragment, str):
                size += len(fragment)
            if self.output is not None:
                index = item.get("index")
                call = self.calls.setdefault(index if isinstance(index, int) else len(self.calls), Call())
                call.id = item.get("id") or call.id
                call.type = item.get("type") or call.type
                call.name += function.get("name") or ""
                if isinstance(fragment, str):
                    call.arguments.append(fragment)
        # A call's first delta (id and name, no argument yet) is output too: count it as a token of one character.
        return max(size, 1), False

    def finish(self, truncated: bool, now_ns: int) -> None:
        record = self.record
        record.kernel_timed = self.loop_timed is False
        if not self.done:
            record.end_ns = now_ns - self.origin
            if truncated:
                record.fail("disconnect", "the stream ended in the middle of an event")
            else:
                record.fail("protocol_error", "the stream ended without data: [DONE]")
        usage = self.usage
        if usage is not None:
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            record.prompt_tokens = prompt if isinstance(prompt, int) else None
            record.completion_tokens = completion if isinstance(completion, int) else None
        elif record.error_kind is None:
            record.nonconformant("no usage in the stream although stream_options.include_usage was sent")
        record.chunk_tokens = apportion(self.chars, record.completion_tokens)
        if record.error_kind is None and record.finish_reason is None:
            record.nonconformant("no chunk carried a finish_reason")
        # An answer the output limit cut is not judged: guided decoding stops mid-value where the limit says.
        if self.output is not None and record.error_kind is None and record.finish_reason != "length":
            calls = [self.calls[i] for i in sorted(self.calls)]
            record.output_error = self.output.check("".join(self.content), calls, record.finish_reason) or ""
