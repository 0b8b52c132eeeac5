"""The faults of what a server writes: engine output, response bodies, stream events, the model endpoints."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from reference_server.engines.base import Delta
from reference_server.faults.catalog import Fault
from reference_server.profile import DONE, sse
from reference_server.protocol import CompletionRequest

_SHAPE_FAULTS = frozenset({Fault.WRONG_USAGE, Fault.WRONG_OBJECT, Fault.WRONG_MODEL, Fault.BAD_ID, Fault.OLD_CREATED})
_CHOICE_FAULTS = frozenset({Fault.SAME_CHOICE_INDEX, Fault.SHORT_TOP_LOGPROBS, Fault.TOOL_FINISH_STOP})


def delta(fault: Fault, delta: Delta, req: CompletionRequest) -> Delta:
    """An engine delta of `req`, changed as the fault says."""
    natural_end = delta.finish_reason == "stop" and not req.stop and req.tool_choice.mode == "none"
    if fault is Fault.LENGTH_ON_EOS and natural_end:
        return dataclasses.replace(delta, finish_reason="length")
    if delta.finish_reason is None:
        return delta
    if fault is Fault.JSON_TRAILING_TEXT and req.response_format == "json_object":
        return dataclasses.replace(delta, text=delta.text + " ok")
    if fault is Fault.TOOL_ARGS_NOT_JSON and req.tool_choice.mode == "function" and delta.text:
        return dataclasses.replace(delta, text=delta.text[:-1])
    return delta


def body(fault: Fault, choices: int, body: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed response body of a request for `choices` choices, broken as the fault says (a copy)."""
    body = copy.deepcopy(body)
    if fault is not Fault.NO_CHOICE_INDEX or choices == 1:
        _break_shape(fault, body)
    _break_choices(fault, body)
    if fault is Fault.MISSING_USAGE:
        body.pop("usage", None)
    return body


def events(fault: Fault, arg: int, choices: int, index: int, chunk: dict[str, Any]) -> list[bytes]:
    """The SSE events sent for chunk number `index` (0-based) of a stream; the chunk itself is left untouched."""
    if fault is Fault.MALFORMED_CHUNK and index == max(arg, 1):
        return [b'data: {"id": "broken", "choices": [\n\n']
    if fault is Fault.STREAM_NO_USAGE and chunk.get("usage") and not chunk["choices"]:
        return []  # the openai profile's usage-only chunk
    chunk = _broken_chunk(fault, choices, index, chunk)
    event = sse(chunk)
    if fault is Fault.TOOL_STREAM_DRIFT and _is_fragment(chunk):
        # The fragments twice, and nothing else twice: the copy carries no finish_reason and no usage.
        again = copy.deepcopy({k: v for k, v in chunk.items() if k != "usage"})
        for choice in again["choices"]:
            choice["finish_reason"] = None
        return [sse(again), event]
    if fault is Fault.NO_BLANK_LINE:
        event = event[:-1]
    finishing = any(c.get("finish_reason") for c in chunk["choices"])
    if fault is Fault.DOUBLE_FINISH and finishing:
        return [event, event]
    if fault is Fault.EXTRA_FINISH and finishing and choices == 1:
        empty = copy.deepcopy({k: v for k, v in chunk.items() if k != "usage"})
        for choice in empty["choices"]:
            choice.update({"delta": {"content": ""}} if "delta" in choice else {"text": ""})
            choice.pop("logprobs", None)
        return [sse(empty), event]
    return [event]


def _broken_chunk(fault: Fault, choices: int, index: int, chunk: dict[str, Any]) -> dict[str, Any]:
    """Chunk number `index` with its fields broken as the fault says (a copy wherever anything changes)."""
    if fault is Fault.CHANGING_ID and index >= 1:
        chunk = {**chunk, "id": chunk["id"] + "x"}
    if (fault is Fault.MISSING_USAGE and "usage" in chunk) or (fault is Fault.STREAM_NO_USAGE and chunk.get("usage")):
        chunk = {k: v for k, v in chunk.items() if k != "usage"}
    if fault in _SHAPE_FAULTS:
        chunk = copy.deepcopy(chunk)
        _break_shape(fault, chunk)
    if fault is Fault.WRONG_FINISH:
        chunk = copy.deepcopy(chunk)
        for choice in chunk["choices"]:
            if choice.get("finish_reason") is not None:
                choice["finish_reason"] = "eos"
    if fault is Fault.NO_CHUNK_INDEX and choices == 1:
        chunk = copy.deepcopy(chunk)
        _break_shape(Fault.NO_CHOICE_INDEX, chunk)
    if fault is Fault.CHANGING_CREATED and index >= 1:
        chunk = {**chunk, "created": int(chunk["created"]) + 1}
    if fault is Fault.ZERO_ERROR:
        chunk = {**chunk, "error": {"message": "", "type": "", "code": 0}}
    if fault in _CHOICE_FAULTS:
        chunk = copy.deepcopy(chunk)
        _break_choices(fault, chunk)
    return chunk


def done(fault: Fault) -> bytes:
    """The stream's last bytes: `[DONE]`, none, or twice."""
    if fault is Fault.NO_DONE:
        return b""
    if fault is Fault.DOUBLE_DONE:
        return DONE + DONE
    return DONE


def model_list(fault: Fault, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "data": []} if fault is Fault.UNLISTED_MODEL else body


def model_card(fault: Fault, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "id": body["id"] + "-other"} if fault is Fault.WRONG_MODEL_CARD else body


def _break_shape(fault: Fault, body: dict[str, Any]) -> None:
    if fault is Fault.WRONG_USAGE and body.get("usage"):
        body["usage"]["total_tokens"] += 1
    elif fault is Fault.WRONG_OBJECT:
        body["object"] = "chat.completion.wrong"
    elif fault is Fault.WRONG_MODEL:
        body["model"] = body["model"] + "-other"
    elif fault is Fault.BAD_ID:
        body["id"] = "not an id"
    elif fault is Fault.OLD_CREATED:
        body["created"] = int(body["created"]) - 86_400
    elif fault is Fault.WRONG_FINISH:
        for choice in body.get("choices", []):
            choice["finish_reason"] = "eos"
    elif fault is Fault.NO_CHOICE_INDEX:
        for choice in body.get("choices", []):
            choice.pop("index", None)


def _break_choices(fault: Fault, body: dict[str, Any]) -> None:
    """The faults of a response's (or chunk's) choices beyond plain text."""
    for choice in body.get("choices", []):
        if fault is Fault.SAME_CHOICE_INDEX and "index" in choice:
            choice["index"] = 0
        elif fault is Fault.TOOL_FINISH_STOP and choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "stop"
        elif fault is Fault.SHORT_TOP_LOGPROBS and isinstance(logprobs := choice.get("logprobs"), dict):
            for entry in logprobs.get("content") or ():  # chat
                entry["top_logprobs"] = entry["top_logprobs"][:-1]
            if isinstance(tops := logprobs.get("top_logprobs"), list):  # completions
                logprobs["top_logprobs"] = [dict(list(top.items())[:-1]) for top in tops]


def _is_fragment(chunk: dict[str, Any]) -> bool:
    """A chunk carrying only argument fragments of tool calls (no call's start)."""
    calls = [c for choice in chunk.get("choices", []) for c in (choice.get("delta") or {}).get("tool_calls") or ()]
    return bool(calls) and all("id" not in c for c in calls)
