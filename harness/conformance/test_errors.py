"""Errors: an unknown model is 404 and an invalid request 400, each in the OpenAI envelope with a useful message."""

from __future__ import annotations

from typing import Any

import pytest

from harness.conformance.contract import PATHS, Contract, Kind
from harness.conformance.endpoint import Api, Reply

__all__ = ["test_invalid_request", "test_unknown_model"]

UNKNOWN_MODEL = "conformance/no-such-model"


def _error(reply: Reply, contract: Contract, status: int, what: str) -> dict[str, Any]:
    assert reply.status == status, f"{what}: expected {status}, got {reply.describe()}"
    body = reply.json()
    problems = contract.errors("error", body)
    assert not problems, f"{what}: the {status} is not in the OpenAI error envelope: {problems}"
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.errors
@pytest.mark.parametrize("endpoint", ["chat", "completion", "retrieve"])
def test_unknown_model(api: Api, contract: Contract, endpoint: str) -> None:
    """An unknown model is 404, and the message names it."""
    if endpoint == "retrieve":
        reply = api.get(f"/models/{UNKNOWN_MODEL}")
    else:
        kind: Kind = "chat" if endpoint == "chat" else "completion"
        reply = api.post(PATHS[kind], {**contract.body(kind, max_tokens=1), "model": UNKNOWN_MODEL})
    error = _error(reply, contract, 404, f"unknown model on {endpoint}")
    assert UNKNOWN_MODEL in error["message"], f"the message does not name the model: {error['message']!r}"


# name: (endpoint, body or raw bytes, the argument the message must point at, if any)
INVALID: dict[str, tuple[Kind, Any, str | None]] = {
    "malformed_json": ("chat", b'{"model": "m", "messages": [', None),
    "not_an_object": ("chat", b"[1, 2, 3]", None),
    "missing_messages": ("chat", {}, "messages"),
    "empty_messages": ("chat", {"messages": []}, "messages"),
    "messages_not_a_list": ("chat", {"messages": "Say 'Test'."}, "messages"),
    "temperature_not_a_number": ("chat", {"temperature": "hot"}, "temperature"),
    "temperature_out_of_range": ("chat", {"temperature": 5}, "temperature"),
    "top_p_out_of_range": ("chat", {"top_p": 1.5}, "top_p"),
    "max_tokens_zero": ("completion", {"max_tokens": 0}, "max_tokens"),
    "max_tokens_not_an_integer": ("completion", {"max_tokens": "ten"}, "max_tokens"),
    "prompt_not_text": ("completion", {"prompt": 42}, "prompt"),
}


def _body(contract: Contract, kind: Kind, spec: Any) -> bytes | dict[str, Any]:
    if isinstance(spec, bytes):
        return spec
    base = {**contract.body(kind, max_tokens=1), **spec}
    if spec == {}:
        base.pop("messages", None)
    return base


@pytest.mark.errors
@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_request(api: Api, contract: Contract, case: str) -> None:
    """Malformed JSON, wrong types, out-of-range values and empty messages are 400, pointing at the argument."""
    kind, spec, argument = INVALID[case]
    reply = api.post(PATHS[kind], _body(contract, kind, spec))
    error = _error(reply, contract, 400, case.replace("_", " "))
    if argument is not None:
        pointed = argument in (error.get("param") or "") or argument in error["message"]
        assert pointed, f"the error points neither param nor message at {argument!r}: {error!r}"
