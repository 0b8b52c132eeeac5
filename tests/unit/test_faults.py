from __future__ import annotations

import orjson
import pytest

from reference_server.errors import APIError
from reference_server.faults import NO_FAULT, Fault, InjectedFault, parse

CHUNK = {
    "id": "i",
    "object": "text_completion",
    "created": 100,
    "model": "m",
    "choices": [{"index": 0, "text": "a", "finish_reason": None}],
}
LAST = {
    **CHUNK,
    "choices": [{"index": 0, "text": "b", "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}


def test_parse_names_and_arguments() -> None:
    assert parse(None) is NO_FAULT
    assert parse("reset:3") == InjectedFault(Fault.RESET, 3)
    assert parse("wrong_usage") == InjectedFault(Fault.WRONG_USAGE, 0)
    with pytest.raises(APIError, match="Unknown fault"):
        parse("meltdown")


def test_stream_faults_break_one_thing_each() -> None:
    assert InjectedFault(Fault.NO_DONE, 0).done() == b""
    assert InjectedFault(Fault.DOUBLE_DONE, 0).done() == b"data: [DONE]\n\ndata: [DONE]\n\n"
    (malformed,) = InjectedFault(Fault.MALFORMED_CHUNK, 1).events(1, CHUNK)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(malformed.removeprefix(b"data: "))
    assert InjectedFault(Fault.CHANGING_ID, 0).events(0, CHUNK) == InjectedFault(Fault.NO_DONE, 0).events(0, CHUNK)
    (changed,) = InjectedFault(Fault.CHANGING_ID, 0).events(1, CHUNK)
    assert orjson.loads(changed[6:])["id"] == "ix"
    assert len(InjectedFault(Fault.DOUBLE_FINISH, 0).events(5, LAST)) == 2
    (usage,) = InjectedFault(Fault.WRONG_USAGE, 0).events(5, LAST)
    assert orjson.loads(usage[6:])["usage"]["total_tokens"] == 4
    (missing,) = InjectedFault(Fault.MISSING_USAGE, 0).events(5, LAST)
    assert "usage" not in orjson.loads(missing[6:])
    (tight,) = InjectedFault(Fault.NO_BLANK_LINE, 0).events(0, CHUNK)
    assert tight.endswith(b"}\n") and not tight.endswith(b"\n\n")
    assert InjectedFault(Fault.RESET, 2).reset_after(1) and not InjectedFault(Fault.RESET, 2).reset_after(0)
    assert InjectedFault(Fault.STALL, 250).stall_ms(1) == 250 and InjectedFault(Fault.STALL, 250).stall_ms(2) == 0
    assert CHUNK["id"] == "i" and LAST["usage"]["total_tokens"] == 3  # inputs are never mutated


def test_body_faults_and_the_500() -> None:
    body = {**LAST, "object": "text_completion"}
    assert InjectedFault(Fault.WRONG_OBJECT, 0).body(body)["object"] != "text_completion"
    assert InjectedFault(Fault.OLD_CREATED, 0).body(body)["created"] == 100 - 86_400
    assert InjectedFault(Fault.WRONG_FINISH, 0).body(body)["choices"][0]["finish_reason"] == "eos"
    with pytest.raises(APIError) as caught:
        InjectedFault(Fault.ERROR_500, 0).before_response()
    assert caught.value.status == 500
