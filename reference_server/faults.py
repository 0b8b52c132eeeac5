"""Fault injection: one fault per request, chosen by the `x-fault` header, only when the server allows it.

Faults break the contract in one precise way each, so that every conformance check and every harness
error path can be shown to fire. They are applied where the HTTP layer builds responses; engines know nothing of them.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import orjson

import schemas
from reference_server.auth import KeyRing
from reference_server.config import ApiKey
from reference_server.engines.base import Delta, StructuredOutput
from reference_server.errors import APIError, bad_request
from reference_server.limiter import ConcurrencyLimiter, Slot
from reference_server.profile import DONE, sse
from reference_server.tools import new_call_id

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
    MISSING_ROLE = "missing_role"  # the chat stream has no role delta (n = 1)
    DOUBLE_DONE = "double_done"  # `data: [DONE]` is sent twice
    NO_BLANK_LINE = "no_blank_line"  # events are separated by one newline instead of a blank line
    WRONG_CONTENT_TYPE = "wrong_content_type"  # the stream is sent as application/json
    MISSING_USAGE = "missing_usage"  # no usage anywhere in the response
    WRONG_MODEL = "wrong_model"  # `model` does not echo the request
    BAD_ID = "bad_id"  # the id does not have the profile's format
    OLD_CREATED = "old_created"  # `created` is a day in the past
    TEXT_DRIFT = "text_drift"  # the streamed text differs from the non-streamed text (requests without tools)
    IGNORE_STOP = "ignore_stop"  # a lone stop string (a string or a list of one) is not honoured
    IGNORE_MAX_TOKENS = "ignore_max_tokens"  # one token more than `max_tokens` (`max_completion_tokens` holds)
    TEMPLATE_COMPLETION = "template_completion"  # a completion prompt gets a second BOS
    WRONG_FINISH = "wrong_finish"  # finish_reason is a value outside stop/length
    NOT_ENVELOPE = "not_envelope"  # errors are answered as plain text
    # One per conformance check that no fault above breaks alone (see harness/conformance).
    UNLISTED_MODEL = "unlisted_model"  # /v1/models lists no model
    WRONG_MODEL_CARD = "wrong_model_card"  # /v1/models/{id} describes another model
    NO_CHOICE_INDEX = "no_choice_index"  # a non-streamed lone choice (n = 1) lacks `index`
    NO_CHUNK_INDEX = "no_chunk_index"  # a streamed lone choice (n = 1) lacks `index`
    REPEATED_ID = "repeated_id"  # every response has the same (well-formed) id
    LENGTH_ON_EOS = "length_on_eos"  # a natural end (EOS, no stop string, no tools) is reported as `length`
    STRICT_ARGS = "strict_args"  # arguments outside the request schema are refused with 400
    CHANGING_CREATED = "changing_created"  # `created` changes after the first chunk
    EXTRA_FINISH = "extra_finish"  # an empty chunk with a finish_reason comes before the real last one (n = 1)
    STREAM_NO_USAGE = "stream_no_usage"  # streams carry no usage (non-streamed responses still do)
    ZERO_ERROR = "zero_error"  # every chunk carries a zero-valued `error` object, as Go structs do
    BOS_IF_MISSING = "bos_if_missing"  # a completion prompt without the BOS gets one
    ALLOW_MISSING_KEY = "allow_missing_key"  # no Authorization header is served as the first key
    ALLOW_WRONG_KEY = "allow_wrong_key"  # any Bearer key is accepted
    UNKNOWN_MODEL_400 = "unknown_model_400"  # an unknown model is answered 400 instead of 404
    STATUS_422 = "status_422"  # invalid requests are answered 422 instead of 400
    NO_RETRY_AFTER = "no_retry_after"  # 429 without Retry-After
    SHARED_LIMIT = "shared_limit"  # all keys share one concurrency counter
    LATE_RELEASE = "late_release"  # a finished request keeps its slot until its key has nothing in flight
    LEAK_ABANDONED = "leak_abandoned"  # so does a non-streamed request whose client went away
    REJECT_LEAK = "reject_leak"  # from the Nth rejection in a row, each 429 keeps a slot likewise
    # The chat surface beyond plain text (issue 17): one per check of the features.
    IGNORE_MAX_COMPLETION_TOKENS = "ignore_max_completion_tokens"  # max_completion_tokens ignored (max_tokens kept)
    FIRST_STOP_ONLY = "first_stop_only"  # only the first string of a stop list is honoured
    SAME_CHOICE_INDEX = "same_choice_index"  # with n > 1 every choice has index 0
    SHORT_TOP_LOGPROBS = "short_top_logprobs"  # one alternative fewer than asked at every token
    JSON_TRAILING_TEXT = "json_trailing_text"  # JSON mode's output gets " ok" after the object
    SCHEMA_VIOLATION = "schema_violation"  # json_schema output lacks the schema's first required property
    TOOL_ARGS_NOT_JSON = "tool_args_not_json"  # a named tool call's arguments lose their last character
    REPEATED_TOOL_ID = "repeated_tool_id"  # every tool call has the same id
    TOOL_STREAM_DRIFT = "tool_stream_drift"  # streamed argument fragments are sent twice
    TOOL_FINISH_STOP = "tool_finish_stop"  # finish_reason "stop" after a tool call
    TOOLS_DESPITE_NONE = "tools_despite_none"  # tool_choice none still calls a tool
    SEED_IGNORED = "seed_ignored"  # seed is ignored
    REJECT_FEATURES = "reject_features"  # tools, response_format, logprobs and n > 1 refused with 400 (not offered)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """One request's fault. Each breaks one promise precisely: faults about a lone choice leave requests for
    several choices alone, so that the check of `n` fails only by its own fault (`same_choice_index`)."""

    fault: Fault
    arg: int
    choices: int = 1  # the request's n, once it is parsed (`for_request`)

    def for_request(self, n: int) -> FaultPlan:
        return dataclasses.replace(self, choices=n)

    def before_response(self) -> None:
        if self.fault is Fault.ERROR_500:
            raise APIError(500, "Injected fault: internal error.", type="server_error", code="injected_fault")

    def check_request(self, kind: Literal["chat", "completion"], raw: bytes) -> None:
        """`strict_args`: refuse what the spec says is ignored."""
        if self.fault is not Fault.STRICT_ARGS:
            return
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return  # the parser says what is wrong with it
        name = "chat_completion_request" if kind == "chat" else "completion_request"
        known = schemas.load(f"requests/{name}.json")["properties"]
        unknown = sorted(k for k in data if k not in known) if isinstance(data, dict) else []
        if unknown:
            raise bad_request(f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0])

    def error(self, error: APIError) -> APIError:
        """An error of the completion endpoints, answered wrongly as the fault says."""
        f = self.fault
        if f is Fault.UNKNOWN_MODEL_400 and error.status == 404:
            error.status = 400
        elif f is Fault.STATUS_422 and error.status == 400:
            error.status = 422
        elif f is Fault.NO_RETRY_AFTER and error.status == 429:
            error.headers = {k: v for k, v in error.headers.items() if k.lower() != "retry-after"}
        return error

    def ident(self, ident: str) -> str:
        """`repeated_id`: the same id every time, in the same format (the ids end in 32 hex digits)."""
        return ident[:-32] + "0" * 32 if self.fault is Fault.REPEATED_ID else ident

    def completion_prompt(self, model: str, prompt: str) -> str:
        if self.fault is Fault.TEMPLATE_COMPLETION:
            return schemas.SPECIAL_TOKENS["llama3"]["bos_token"] + prompt
        if self.fault is Fault.BOS_IF_MISSING:
            bos = schemas.SPECIAL_TOKENS[schemas.family_for_model(model) or "llama3"]["bos_token"]
            return prompt if prompt.startswith(bos) else bos + prompt
        return prompt

    def request_body(self, kind: Literal["chat", "completion"], raw: bytes) -> bytes:
        """The request as a server with this fault reads it: arguments dropped or changed, or features refused."""
        f = self.fault
        if f not in _REQUEST_FAULTS:
            return raw
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw  # the parser says what is wrong with it
        if not isinstance(data, dict):
            return raw
        if f is Fault.REJECT_FEATURES:
            offered = ("tools", "logprobs", "top_logprobs")
            refused = [k for k in offered if data.get(k) not in (None, False, [])]
            if (data.get("n") or 1) > 1:
                refused.append("n")
            if (data.get("response_format") or {}).get("type", "text") != "text":
                refused.append("response_format")
            if refused:
                raise bad_request(f"This server does not support {', '.join(refused)}.", param=refused[0])
            return raw
        if f is Fault.IGNORE_MAX_COMPLETION_TOKENS:
            data.pop("max_completion_tokens", None)
        elif f is Fault.IGNORE_MAX_TOKENS and isinstance(data.get("max_tokens"), int) and data["max_tokens"] >= 1:
            if kind == "completion" or data.get("max_completion_tokens") is None:
                data["max_tokens"] += 1
        elif f is Fault.IGNORE_STOP and (isinstance(data.get("stop"), str) or len(data.get("stop") or ()) == 1):
            data.pop("stop")
        elif f is Fault.FIRST_STOP_ONLY and isinstance(data.get("stop"), list):
            data["stop"] = data["stop"][:1]
        elif f is Fault.SEED_IGNORED:
            data.pop("seed", None)
        elif f is Fault.TOOLS_DESPITE_NONE and data.get("tool_choice") == "none" and data.get("tools"):
            data["tool_choice"] = "required"
        return orjson.dumps(data)

    def structured(self, structured: StructuredOutput | None) -> StructuredOutput | None:
        """`schema_violation`: guide the output by the schema less its first required property."""
        if self.fault is not Fault.SCHEMA_VIOLATION or structured is None or structured.schema is None:
            return structured
        schema = copy.deepcopy(dict(structured.schema))
        required = list(schema.get("required") or ())
        if required:
            schema["required"] = required[1:]
            schema.get("properties", {}).pop(required[0], None)
            schema["additionalProperties"] = False
        return StructuredOutput(schema)

    def delta(self, delta: Delta, req: Any) -> Delta:
        """An engine delta of request `req` (a `protocol.CompletionRequest`), changed as the fault says."""
        f = self.fault
        natural_end = delta.finish_reason == "stop" and not req.stop and req.tool_choice.mode == "none"
        if f is Fault.LENGTH_ON_EOS and natural_end:
            return dataclasses.replace(delta, finish_reason="length")
        if delta.finish_reason is None:
            return delta
        if f is Fault.JSON_TRAILING_TEXT and req.response_format == "json_object":
            return dataclasses.replace(delta, text=delta.text + " ok")
        if f is Fault.TOOL_ARGS_NOT_JSON and req.tool_choice.mode == "function" and delta.text:
            return dataclasses.replace(delta, text=delta.text[:-1])
        return delta

    def call_ids(self) -> Callable[[], str]:
        """Tool call ids: `repeated_tool_id` gives every call the same one."""
        if self.fault is Fault.REPEATED_TOOL_ID:
            return lambda: "call_" + "0" * 24
        return new_call_id

    def model_list(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "data": []} if self.fault is Fault.UNLISTED_MODEL else body

    def model_card(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "id": body["id"] + "-other"} if self.fault is Fault.WRONG_MODEL_CARD else body

    def authenticate(self, keyring: KeyRing, authorization: str | None) -> ApiKey:
        try:
            return keyring.authenticate(authorization)
        except APIError:
            if self.fault is Fault.ALLOW_MISSING_KEY and not authorization:
                return keyring.keys[0]
            if self.fault is Fault.ALLOW_WRONG_KEY and (authorization or "").lower().startswith("bearer "):
                return keyring.keys[0]
            raise

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed response body, broken as the fault says."""
        body = copy.deepcopy(body)
        if self.fault is not Fault.NO_CHOICE_INDEX or self.choices == 1:
            _break_shape(self.fault, body)
        _break_choices(self.fault, body)
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
        if f is Fault.NO_CHUNK_INDEX and self.choices == 1:
            chunk = copy.deepcopy(chunk)
            _break_shape(Fault.NO_CHOICE_INDEX, chunk)
        if f is Fault.CHANGING_CREATED and index >= 1:
            chunk = {**chunk, "created": int(chunk["created"]) + 1}
        if f is Fault.STREAM_NO_USAGE and chunk.get("usage"):
            if not chunk["choices"]:
                return []  # the openai profile's usage-only chunk
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        if f is Fault.ZERO_ERROR:
            chunk = {**chunk, "error": {"message": "", "type": "", "code": 0}}
        if f in _CHOICE_FAULTS:
            chunk = copy.deepcopy(chunk)
            _break_choices(f, chunk)
        event = sse(chunk)
        if f is Fault.TOOL_STREAM_DRIFT and _is_fragment(chunk):
            # The fragments twice, and nothing else twice: the copy carries no finish_reason and no usage.
            again = copy.deepcopy({k: v for k, v in chunk.items() if k != "usage"})
            for choice in again["choices"]:
                choice["finish_reason"] = None
            return [sse(again), event]
        if f is Fault.NO_BLANK_LINE:
            event = event[:-1]
        finishing = any(c.get("finish_reason") for c in chunk["choices"])
        if f is Fault.DOUBLE_FINISH and finishing:
            return [event, event]
        if f is Fault.EXTRA_FINISH and finishing and self.choices == 1:
            empty = copy.deepcopy({k: v for k, v in chunk.items() if k != "usage"})
            for choice in empty["choices"]:
                choice.update({"delta": {"content": ""}} if "delta" in choice else {"text": ""})
                choice.pop("logprobs", None)
            return [sse(empty), event]
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
    elif fault is Fault.NO_CHOICE_INDEX:
        for choice in body.get("choices", []):
            choice.pop("index", None)


_REQUEST_FAULTS = frozenset(
    {
        Fault.IGNORE_MAX_TOKENS,
        Fault.IGNORE_STOP,
        Fault.IGNORE_MAX_COMPLETION_TOKENS,
        Fault.FIRST_STOP_ONLY,
        Fault.SEED_IGNORED,
        Fault.TOOLS_DESPITE_NONE,
        Fault.REJECT_FEATURES,
    }
)
_CHOICE_FAULTS = frozenset({Fault.SAME_CHOICE_INDEX, Fault.SHORT_TOP_LOGPROBS, Fault.TOOL_FINISH_STOP})


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


Outcome = Literal["finished", "abandoned", "failed"]


@dataclass(slots=True)
class SlotLedger:
    ghosts: dict[str, int] = field(default_factory=dict)  # slots held by nothing, per key
    rejections: dict[str, int] = field(default_factory=dict)  # 429s in a row, per key


# Ghost slots belong to one limiter (one server); they vanish with it.
class SlotFaults:
    """The limiter faults: a shared counter, and slots kept by requests that are over ("ghosts").

    A ghost slot is freed when its key has nothing in flight any more, so that a leak shows only while
    requests overlap and one faulty step does not spill into unrelated ones.
    """

    def __init__(self, plan: FaultPlan, limiter: ConcurrencyLimiter, ledger: SlotLedger) -> None:
        self.plan = plan
        self.limiter = limiter
        self.ledger = ledger

    def key_name(self, name: str) -> str:
        return "shared" if self.plan.fault is Fault.SHARED_LIMIT else name

    def acquire(self, key_name: str, limit: int) -> Slot | None:
        slot = self.limiter.try_acquire(key_name, limit - self.ledger.ghosts.get(key_name, 0))
        if slot is not None:
            self.ledger.rejections[key_name] = 0
            return slot
        run = self.ledger.rejections[key_name] = self.ledger.rejections.get(key_name, 0) + 1
        if self.plan.fault is Fault.REJECT_LEAK and run >= max(self.plan.arg, 1):
            self._haunt(key_name)
        return None

    def release(self, slot: Slot, outcome: Outcome, streamed: bool) -> None:
        self.limiter.release(slot)
        key = slot.key_name
        self.ledger.rejections[key] = 0
        if self.limiter.in_flight(key) == 0:
            self.ledger.ghosts.pop(key, None)
            return
        f = self.plan.fault
        if (f is Fault.LATE_RELEASE and outcome == "finished") or (
            f is Fault.LEAK_ABANDONED and outcome == "abandoned" and not streamed
        ):
            self._haunt(key)

    def _haunt(self, key_name: str) -> None:
        self.ledger.ghosts[key_name] = self.ledger.ghosts.get(key_name, 0) + 1
