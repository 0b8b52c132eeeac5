"""Server-sent events as the checks see them: a lenient reader for the chunks, a strict judge of the framing.

The chunk reader follows the SSE standard (any line ending, comments and unknown fields ignored, events end at a
blank line), so that one framing defect fails the framing check and not every streaming check with it. The framing
judge holds a stream to what the OpenAI-style APIs send: `data: ` lines, one per event, each event ended by a blank
line, `[DONE]` last and only once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

DONE = "[DONE]"
_LINES = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class StreamReply:
    """A streamed response read to its end: status, headers and every byte of the body, undecoded."""

    status: int
    headers: Mapping[str, str]
    raw: bytes
    sent_at_s: float  # wall clock when the request was sent

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def chunks(self) -> list[dict[str, Any]]:
        """The JSON chunks before the first `[DONE]`; a chunk that is not a JSON object fails the check."""
        assert self.status == 200, f"the streamed request failed with HTTP {self.status}: {self.raw[:300]!r}"
        chunks: list[dict[str, Any]] = []
        for n, payload in enumerate(data_payloads(self.raw)):
            if payload == DONE:
                break
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise AssertionError(f"chunk {n} is not JSON ({exc}): {payload[:200]!r}") from None
            assert isinstance(chunk, dict), f"chunk {n} is not a JSON object: {payload[:200]!r}"
            chunks.append(chunk)
        assert chunks, f"the stream has no chunks: {self.raw[:300]!r}"
        return chunks


def data_payloads(raw: bytes) -> list[str]:
    """The data of each event, as an SSE client (such as the OpenAI SDK) assembles it."""
    payloads: list[str] = []
    data: list[str] | None = None
    for line in _LINES.split(raw.decode("utf-8", errors="replace")):
        if not line:
            if data is not None:
                payloads.append("\n".join(data))
            data = None
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data = [*(data or []), value.removeprefix(" ")]
    if data is not None:  # an event the stream did not terminate still counts for a lenient reader
        payloads.append("\n".join(data))
    return payloads


def framing_problems(raw: bytes) -> list[str]:
    """Everything wrong with how a stream is framed, in order; empty when the framing is right."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [f"the stream is not UTF-8: {exc}"]
    if not text:
        return ["the stream is empty"]
    problems: list[str] = []
    if not text.endswith("\n\n"):
        problems.append(f"the stream does not end with a blank line: ends with {text[-60:]!r}")
    blocks = [b for b in text.split("\n\n") if b]
    payloads: list[str] = []
    for n, block in enumerate(blocks):
        lines = block.split("\n")
        fields = [line for line in lines if not line.startswith(":")]  # SSE comments are allowed keep-alives
        data = [line for line in fields if line.startswith("data: ")]
        others = [line for line in fields if not line.startswith("data: ")]
        if others:
            problems.append(f"event {n} has a line that is not `data: …`: {others[0][:80]!r}")
        if len(data) > 1:
            problems.append(f"event {n} has {len(data)} data lines (events must be separated by a blank line)")
        if data:
            payloads.append(data[0].removeprefix("data: "))
    done_at = [n for n, p in enumerate(payloads) if p.strip() == DONE]
    if not done_at:
        problems.append("the stream does not end with `data: [DONE]`")
    elif len(done_at) > 1:
        problems.append(f"`data: [DONE]` is sent {len(done_at)} times")
    elif done_at[0] != len(payloads) - 1:
        problems.append("`data: [DONE]` is not the last event")
    for n, payload in enumerate(payloads):
        if payload.strip() == DONE:
            continue
        try:
            if not isinstance(orjson.loads(payload), dict):
                problems.append(f"event {n} is not a JSON object")
        except orjson.JSONDecodeError:
            problems.append(f"event {n} is not JSON: {payload[:80]!r}")
    return problems
