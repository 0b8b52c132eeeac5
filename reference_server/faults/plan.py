"""A request's fault plan: parsed once from its `x-fault` header, consulted at each hook point of the request path.

`FaultPlan` itself changes nothing: it is the plan of every request without a fault (`NO_FAULT`), so the request path
never asks whether there is one. `InjectedFault` breaks one promise; `UnknownFault` is a header naming no fault,
which the client is told of (400) where its key would be checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reference_server.auth import KeyRing
from reference_server.config import ApiKey
from reference_server.engines.base import Delta, StructuredOutput
from reference_server.errors import APIError, bad_request
from reference_server.faults import request, response
from reference_server.faults.catalog import HEADER, Fault
from reference_server.faults.slots import FaultyLimiter, SlotLedger
from reference_server.limiter import Limiter
from reference_server.profile import DONE, sse
from reference_server.protocol import CompletionRequest, Kind
from reference_server.tools import new_call_id

SSE_CONTENT_TYPE = "text/event-stream"


class FaultPlan:
    """The hook points of the request path, in the order a request meets them. This plan changes nothing."""

    __slots__ = ()

    @property
    def plain_errors(self) -> bool:
        """Errors are answered as plain text rather than in the envelope."""
        return False

    @property
    def rewrites_chunks(self) -> bool:
        """Every chunk of a stream must pass through `events` (no pre-serialised fast path)."""
        return False

    def authenticate(self, keyring: KeyRing, authorization: str | None) -> ApiKey:
        return keyring.authenticate(authorization)

    def limiter(self, limiter: Limiter, ledger: SlotLedger) -> Limiter:
        """The limiter this request takes its slot from."""
        return limiter

    def error(self, error: APIError) -> None:
        """An error of the completion endpoints, changed in place into the error answered."""

    def request_body(self, kind: Kind, raw: bytes) -> bytes:
        """The request body as the server reads it."""
        return raw

    def for_request(self, req: CompletionRequest) -> FaultPlan:
        """This plan for the parsed request (some faults leave requests for several choices alone)."""
        return self

    def completion_prompt(self, model: str, prompt: str) -> str:
        return prompt

    def structured(self, req: CompletionRequest, output: StructuredOutput | None) -> StructuredOutput | None:
        """What the engine's output is guided by."""
        return output

    def before_response(self) -> None:
        """The request is valid and about to be answered."""

    def ident(self, ident: str) -> str:
        return ident

    def call_ids(self) -> Callable[[], str]:
        """The tool call ids' source."""
        return new_call_id

    def delta(self, delta: Delta, req: CompletionRequest) -> Delta:
        """An engine delta, as the response sees it."""
        return delta

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed response body."""
        return body

    def stream_content_type(self) -> str:
        return SSE_CONTENT_TYPE

    def sends_role(self) -> bool:
        """A chat stream starts with a role chunk per choice."""
        return True

    def stream_delta(self, delta: Delta, tokens: int, req: CompletionRequest) -> Delta:
        """A streamed delta, `tokens` the stream's tokens so far (this delta's included)."""
        return delta

    def events(self, index: int, chunk: dict[str, Any]) -> list[bytes]:
        """The SSE events sent for chunk number `index` (0-based) of a stream."""
        return [sse(chunk)]

    def stall_ms(self, index: int) -> int:
        """How long the stream stalls after chunk number `index`."""
        return 0

    def reset_after(self, index: int) -> bool:
        """The connection is reset after chunk number `index`."""
        return False

    def done(self) -> bytes:
        """A stream's last bytes."""
        return DONE

    def model_list(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def model_card(self, body: dict[str, Any]) -> dict[str, Any]:
        return body


NO_FAULT = FaultPlan()


@dataclass(frozen=True, slots=True)
class InjectedFault(FaultPlan):
    """One request's fault. Each breaks one promise precisely: faults about a lone choice leave requests for
    several choices alone, so that the check of `n` fails only by its own fault (`same_choice_index`)."""

    fault: Fault
    arg: int
    choices: int = 1  # the request's n, once it is parsed (`for_request`)
    # `not_envelope` with an argument (`not_envelope:N`) has never changed the error responses; kept so.
    bare: bool = field(default=True, compare=False)

    @property
    def plain_errors(self) -> bool:
        return self.fault is Fault.NOT_ENVELOPE and self.bare

    @property
    def rewrites_chunks(self) -> bool:
        return True

    def authenticate(self, keyring: KeyRing, authorization: str | None) -> ApiKey:
        return request.authenticate(self.fault, keyring, authorization)

    def limiter(self, limiter: Limiter, ledger: SlotLedger) -> Limiter:
        # Every request with a fault goes through the ledger (its ghosts count against it), not only the requests
        # whose fault writes it.
        return FaultyLimiter(self.fault, self.arg, limiter, ledger)

    def error(self, error: APIError) -> None:
        request.wrong_error(self.fault, error)

    def request_body(self, kind: Kind, raw: bytes) -> bytes:
        return request.request_body(self.fault, kind, raw)

    def for_request(self, req: CompletionRequest) -> InjectedFault:
        return dataclasses.replace(self, choices=req.n)

    def completion_prompt(self, model: str, prompt: str) -> str:
        return request.completion_prompt(self.fault, model, prompt)

    def structured(self, req: CompletionRequest, output: StructuredOutput | None) -> StructuredOutput | None:
        return request.structured(self.fault, output) if req.response_format == "json_schema" else output

    def before_response(self) -> None:
        if self.fault is Fault.ERROR_500:
            raise APIError(500, "Injected fault: internal error.", type="server_error", code="injected_fault")

    def ident(self, ident: str) -> str:
        """`repeated_id`: the same id every time, in the same format (the ids end in 32 hex digits)."""
        return ident[:-32] + "0" * 32 if self.fault is Fault.REPEATED_ID else ident

    def call_ids(self) -> Callable[[], str]:
        if self.fault is Fault.REPEATED_TOOL_ID:
            return lambda: "call_" + "0" * 24
        return new_call_id

    def delta(self, delta: Delta, req: CompletionRequest) -> Delta:
        return response.delta(self.fault, delta, req)

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        return response.body(self.fault, self.choices, body)

    def stream_content_type(self) -> str:
        return "application/json" if self.fault is Fault.WRONG_CONTENT_TYPE else SSE_CONTENT_TYPE

    def sends_role(self) -> bool:
        return self.fault is not Fault.MISSING_ROLE or self.choices > 1

    def stream_delta(self, delta: Delta, tokens: int, req: CompletionRequest) -> Delta:
        """`text_drift`: the first token's text streamed with a character more than it is answered with."""
        if self.fault is Fault.TEXT_DRIFT and tokens == 1 and req.tool_choice.mode == "none":
            return dataclasses.replace(delta, text=delta.text + "~")
        return delta

    def events(self, index: int, chunk: dict[str, Any]) -> list[bytes]:
        return response.events(self.fault, self.arg, self.choices, index, chunk)

    def stall_ms(self, index: int) -> int:
        return self.arg if self.fault is Fault.STALL and index == 1 else 0

    def reset_after(self, index: int) -> bool:
        return self.fault is Fault.RESET and index + 1 >= max(self.arg, 1)

    def done(self) -> bytes:
        return response.done(self.fault)

    def model_list(self, body: dict[str, Any]) -> dict[str, Any]:
        return response.model_list(self.fault, body)

    def model_card(self, body: dict[str, Any]) -> dict[str, Any]:
        return response.model_card(self.fault, body)


@dataclass(frozen=True, slots=True)
class UnknownFault(FaultPlan):
    """A header naming no fault: the client's mistake, answered (400) where its key would be checked."""

    refusal: APIError

    def authenticate(self, keyring: KeyRing, authorization: str | None) -> ApiKey:
        raise self.refusal


def parse(header: str | None) -> FaultPlan:
    """`name` or `name:N` (no header: `NO_FAULT`); an unknown name is the client's mistake, answered with 400."""
    if not header:
        return NO_FAULT
    name, colon, arg = header.partition(":")
    try:
        fault = Fault(name.strip())
        number = int(arg) if arg else 0
    except ValueError:
        raise bad_request(
            f"Unknown fault {header!r}; known: {', '.join(f.value for f in Fault)}.", param=HEADER
        ) from None
    return InjectedFault(fault, number, bare=not colon)


def plan_of(header: str | None) -> FaultPlan:
    """The plan of a request's header; a bad header's refusal waits for the request to reach authentication."""
    try:
        return parse(header)
    except APIError as refusal:
        return UnknownFault(refusal)
