"""Fault injection: one fault per request, chosen by the `x-fault` header, only when the server allows it.

Faults break the contract in one precise way each, so that every conformance check and every harness
error path can be shown to fire. They are applied where the HTTP layer builds responses; engines know nothing of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reference_server.errors import APIError, bad_request
from reference_server.profile import DONE, sse

HEADER = "x-fault"


class Fault(StrEnum):
    NO_DONE = "no_done"  # the stream ends without `data: [DONE]`
    MALFORMED_CHUNK = "malformed_chunk"  # chunk N is not JSON
    RESET = "reset"  # the connection is reset after N chunks
    STALL = "stall"  # the stream stalls N ms after the second chunk
    ERROR_500 = "error_500"  # 500 before anything is streamed
    WRONG_USAGE = "wrong_usage"  # total_tokens is off by one
    CHANGING_ID = "changing_id"  # the id changes after the first chunk
    WRONG_OBJECT = "wrong_object"  # `object` is not what the profile says
    DOUBLE_FINISH = "double_finish"  # two chunks carry a finish_reason
    MISSING_ROLE = "missing_role"  # the chat stream has no role delta
    DOUBLE_DONE = "double_done"  # `data: [DONE]` is sent twice
    NO_BLANK_LINE = "no_blank_line"  # events are separated by one newline instead of a blank line
    WRONG_CONTENT_TYPE = "wrong_content_type"  # the stream is sent as application/json
    MISSING_USAGE = "missing_usage"  # no usage anywhere in the response
    WRONG_MODEL = "wrong_model"  # `model` does not echo the request
    BAD_ID = "bad_id"  # the id does not have the profile's format
    OLD_CREATED = "old_created"  # `created` is a day in the past
    TEXT_DRIFT = "text_drift"  # the streamed text differs from the non-streamed text
    IGNORE_STOP = "ignore_stop"  # stop strings are not honoured
    IGNORE_MAX_TOKENS = "ignore_max_tokens"  # one token more than max_tokens
    TEMPLATE_COMPLETION = "template_completion"  # a completion prompt gets a second BOS
    WRONG_FINISH = "wrong_finish"  # finish_reason is a value outside stop/length
    NOT_ENVELOPE = "not_envelope"  # errors are answered as plain text


@dataclass(frozen=True, slots=True)
class FaultPlan:
    fault: Fault
    arg: int

    def before_response(self) -> None:
        if self.fault is Fault.ERROR_500:
            raise APIError(500, "Injected fault: internal error.", type="server_error", code="injected_fault")

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed response body, broken as the fault says."""
        body = copy.deepcopy(body)
        _break_shape(self.fault, body)
        if self.fault is Fault.MISSING_USAGE:
            body.pop("usage", None)
        return body

    def events(self, index: int, chunk: dict[str, Any]) -> list[bytes]:
        """The SSE events sent for chunk number `index` (0-based) of a stream."""
        f = self.fault
        if f is Fault.MALFORMED_CHUNK and index == max(self.arg, 1):
            return [b'data: {"id": "broken", "choices": [\n\n']
        if f is Fault.CHANGING_ID and index >= 1:
            chunk = {**chunk, "id": chunk["id"] + "x"}
        if f is Fault.MISSING_USAGE and "usage" in chunk:
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        if f in (Fault.WRONG_USAGE, Fault.WRONG_OBJECT, Fault.WRONG_MODEL, Fault.BAD_ID, Fault.OLD_CREATED):
            chunk = copy.deepcopy(chunk)
            _break_shape(f, chunk)
        if f is Fault.WRONG_FINISH:
            chunk = copy.deepcopy(chunk)
            for choice in chunk["choices"]:
                if choice.get("finish_reason") is not None:
                    choice["finish_reason"] = "eos"
        event = sse(chunk)
        if f is Fault.NO_BLANK_LINE:
            event = event[:-1]
        if f is Fault.DOUBLE_FINISH and any(c.get("finish_reason") for c in chunk["choices"]):
            return [event, event]
        return [event]

    def done(self) -> bytes:
        if self.fault is Fault.NO_DONE:
            return b""
        if self.fault is Fault.DOUBLE_DONE:
            return DONE + DONE
        return DONE

    def reset_after(self, index: int) -> bool:
        return self.fault is Fault.RESET and index + 1 >= max(self.arg, 1)

    def stall_ms(self, index: int) -> int:
        return self.arg if self.fault is Fault.STALL and index == 1 else 0


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


def parse(header: str | None) -> FaultPlan | None:
    """`name` or `name:N`; an unknown name is the client's mistake, answered with 400."""
    if not header:
        return None
    name, _, arg = header.partition(":")
    try:
        fault = Fault(name.strip())
        number = int(arg) if arg else 0
    except ValueError:
        raise bad_request(
            f"Unknown fault {header!r}; known: {', '.join(f.value for f in Fault)}.", param=HEADER
        ) from None
    return FaultPlan(fault, number)
