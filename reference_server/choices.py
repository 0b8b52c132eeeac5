"""One choice of a response, from the engine's deltas to the client's fields: content, reasoning, tool calls, logprobs.

The HTTP layer makes one `Choice` per choice of a request (`n` of them). Streamed, `add` turns each delta into the
choice objects of the chunks to send (a tool call's start gets a chunk of its own, as OpenAI sends it: id, type and
name first, argument fragments after); not streamed, the same deltas are gathered and `body` gives the choice of
the response. Both go through the same `tools.CallReader`, so a stream and its non-streamed twin agree to the byte.

Plain requests (one choice, no tools, no logprobs) stream through the pre-serialised template in `stream`;
only their last chunk, and any delta with reasoning, come here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reference_server import tools
from reference_server.engines.base import Delta, FinishReason, TokenLogprob
from reference_server.protocol import CompletionRequest

ChoiceFinish = FinishReason | str  # "tool_calls" besides the engine's own


class Choice:
    """The output of choice `index` so far."""

    def __init__(self, index: int, req: CompletionRequest, ids: Callable[[], str] = tools.new_call_id) -> None:
        self.index = index
        self.chat = req.kind == "chat"
        self.tokens = 0
        self.finish: FinishReason | None = None
        self._logprobs = req.logprobs is not None
        self._reader = tools.reader(req.tool_choice, ids) if self.chat else tools.CallReader(ids)
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._entries: list[TokenLogprob] = []
        self._offset = 0  # completions: where the next token's text starts in the output

    @property
    def finish_reason(self) -> ChoiceFinish | None:
        if self.finish == "stop" and self._reader.calls:
            return "tool_calls"
        return self.finish

    def gather(self, delta: Delta) -> None:
        """Take a delta of a non-streamed response."""
        self._take(delta)

    def add(self, delta: Delta) -> list[dict[str, Any]]:
        """The choice objects of the chunks this delta is sent in (none when all of it is held back)."""
        parts, entries = self._take(delta)
        if not self.chat:
            text = delta.reasoning + "".join(p.text for p in parts if isinstance(p, tools.Content))
            if not text and not entries and delta.finish_reason is None:
                return []
            out: dict[str, Any] = {"index": self.index, "text": text, "logprobs": None}
            if self._logprobs:
                out["logprobs"] = self._completion_logprobs(entries, self._offset - len(text))
            out["finish_reason"] = self.finish_reason
            return [out]
        chunks: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        if delta.reasoning:
            current["reasoning_content"] = delta.reasoning
        for part in parts:
            if isinstance(part, tools.Content):
                current["content"] = current.get("content", "") + part.text
            elif isinstance(part, tools.CallStart):
                if current:
                    chunks.append(current)
                chunks.append({"tool_calls": [_call_start(part)]})
                current = {}
            else:
                if "tool_calls" not in current:
                    if current:
                        chunks.append(current)
                    current = {"tool_calls": []}
                current["tool_calls"].append({"index": part.index, "function": {"arguments": part.fragment}})
        if current:
            chunks.append(current)
        finishing = delta.finish_reason is not None
        if not chunks and (finishing or entries):
            chunks.append({"content": ""})
        out_chunks: list[dict[str, Any]] = [{"index": self.index, "delta": d, "finish_reason": None} for d in chunks]
        if out_chunks:
            last = out_chunks[-1]
            if self._logprobs:
                last["logprobs"] = {"content": [_entry(e) for e in entries]}
            last["finish_reason"] = self.finish_reason if finishing else None
        return out_chunks

    def role(self) -> dict[str, Any]:
        """The chat stream's first chunk of this choice."""
        return {"index": self.index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}

    def body(self) -> dict[str, Any]:
        """The choice of the non-streamed response."""
        content = "".join(self._content)
        if not self.chat:
            text = "".join(self._reasoning) + content
            logprobs = self._completion_logprobs(self._entries, 0) if self._logprobs else None
            return {"index": self.index, "text": text, "logprobs": logprobs, "finish_reason": self.finish_reason}
        message: dict[str, Any] = {"role": "assistant", "content": content if content or not self._calls else None}
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if self._calls:
            message["tool_calls"] = self._calls
        choice: dict[str, Any] = {"index": self.index, "message": message}
        if self._logprobs:
            choice["logprobs"] = {"content": [_entry(e) for e in self._entries]}
        choice["finish_reason"] = self.finish_reason
        return choice

    def _take(self, delta: Delta) -> tuple[list[tools.Part], tuple[TokenLogprob, ...]]:
        self.tokens += delta.token_count
        if delta.reasoning:
            self._reasoning.append(delta.reasoning)
            self._offset += len(delta.reasoning)
        parts = self._reader.feed(delta.text)
        if delta.finish_reason is not None:
            self.finish = delta.finish_reason
            parts += self._reader.finish()
        for part in parts:
            if isinstance(part, tools.Content):
                self._content.append(part.text)
                self._offset += len(part.text)
            elif isinstance(part, tools.CallStart):
                call = {"id": part.id, "type": "function", "function": {"name": part.name, "arguments": ""}}
                self._calls.append(call)
            else:
                self._calls[part.index]["function"]["arguments"] += part.fragment
        if self._logprobs:
            self._entries.extend(delta.logprobs)
        return parts, delta.logprobs

    def _completion_logprobs(self, entries: Sequence[TokenLogprob], start: int) -> dict[str, Any]:
        offsets: list[int] = []
        position = max(start, 0)
        for entry in entries:
            offsets.append(position)
            position += len(entry.token)
        return {
            "tokens": [e.token for e in entries],
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [dict(e.top) for e in entries],
            "text_offset": offsets,
        }


def _call_start(part: tools.CallStart) -> dict[str, Any]:
    return {"index": part.index, "id": part.id, "type": "function", "function": {"name": part.name, "arguments": ""}}


def _entry(entry: TokenLogprob) -> dict[str, Any]:
    return {
        "token": entry.token,
        "logprob": entry.logprob,
        "bytes": list(entry.token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in entry.top],
    }
