"""The faults of what the server reads: keys let in, arguments refused, dropped or changed, errors answered wrongly."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest

import schemas
from reference_server.auth import KeyRing
from reference_server.config import ApiKey, digest
from reference_server.errors import APIError
from reference_server.faults import Fault, InjectedFault
from reference_server.protocol import Kind

RING = KeyRing([ApiKey("first", digest("esecret_first_key")), ApiKey("second", digest("esecret_second_key"))])


def read(fault: Fault, body: Mapping[str, object], kind: Kind = "chat") -> dict[str, object]:
    """The request body as a server with `fault` reads it."""
    parsed: dict[str, object] = orjson.loads(InjectedFault(fault, 0).request_body(kind, orjson.dumps(body)))
    return parsed


def test_keys_are_let_in_only_as_each_fault_says() -> None:
    missing, wrong = InjectedFault(Fault.ALLOW_MISSING_KEY, 0), InjectedFault(Fault.ALLOW_WRONG_KEY, 0)
    assert missing.authenticate(RING, None).name == "first"
    assert wrong.authenticate(RING, "Bearer esecret_nobody").name == "first"
    assert wrong.authenticate(RING, "Bearer esecret_second_key").name == "second"
    for plan, header in ((missing, "Bearer esecret_nobody"), (wrong, None), (wrong, "Basic x")):
        with pytest.raises(APIError) as caught:
            plan.authenticate(RING, header)
        assert caught.value.status == 401


def test_arguments_are_dropped_or_changed_one_per_fault() -> None:
    assert read(Fault.IGNORE_STOP, {"stop": "x", "seed": 1}) == {"seed": 1}
    assert read(Fault.IGNORE_STOP, {"stop": ["x", "y"]}) == {"stop": ["x", "y"]}
    assert read(Fault.FIRST_STOP_ONLY, {"stop": ["x", "y"]}) == {"stop": ["x"]}
    assert read(Fault.SEED_IGNORED, {"seed": 7, "n": 2}) == {"n": 2}
    assert read(Fault.IGNORE_MAX_TOKENS, {"max_tokens": 3}) == {"max_tokens": 4}
    # max_completion_tokens holds for chat; completions have only max_tokens.
    both = {"max_tokens": 3, "max_completion_tokens": 5}
    assert read(Fault.IGNORE_MAX_TOKENS, both) == both
    assert read(Fault.IGNORE_MAX_TOKENS, both, kind="completion") == {**both, "max_tokens": 4}
    assert read(Fault.IGNORE_MAX_COMPLETION_TOKENS, both) == {"max_tokens": 3}
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert read(Fault.TOOLS_DESPITE_NONE, {"tools": tools, "tool_choice": "none"})["tool_choice"] == "required"


def test_bodies_that_are_not_json_objects_are_left_to_the_parser() -> None:
    for fault in (Fault.IGNORE_STOP, Fault.STRICT_ARGS, Fault.REJECT_FEATURES):
        assert InjectedFault(fault, 0).request_body("chat", b"{not json") == b"{not json"
        assert InjectedFault(fault, 0).request_body("chat", b"[1]") == b"[1]"
    untouched = b'{"stop": "x"}'
    assert InjectedFault(Fault.WRONG_USAGE, 0).request_body("chat", untouched) is untouched


def test_strict_args_refuses_what_the_spec_says_is_ignored() -> None:
    plan = InjectedFault(Fault.STRICT_ARGS, 0)
    known = {"model": "m", "messages": [], "temperature": 0}
    assert plan.request_body("chat", orjson.dumps(known)) == orjson.dumps(known)
    with pytest.raises(APIError) as caught:
        plan.request_body("chat", orjson.dumps({**known, "zeta": 1, "alpha": 2}))
    assert caught.value.status == 400 and caught.value.param == "alpha"
    assert "alpha, zeta" in caught.value.message


def test_reject_features_refuses_everything_beyond_plain_text() -> None:
    plan = InjectedFault(Fault.REJECT_FEATURES, 0)
    plain = orjson.dumps({"model": "m", "logprobs": False, "n": 1, "response_format": {"type": "text"}})
    assert plan.request_body("chat", plain) == plain
    with pytest.raises(APIError) as caught:
        plan.request_body("chat", orjson.dumps({"n": 2, "logprobs": True, "response_format": {"type": "json_object"}}))
    assert caught.value.param == "logprobs" and "logprobs, n, response_format" in caught.value.message


def test_completion_prompts_get_a_bos_as_the_fault_says() -> None:
    llama3_bos = schemas.SPECIAL_TOKENS["llama3"]["bos_token"]
    model = "meta-llama/Meta-Llama-3-8B-Instruct"
    assert InjectedFault(Fault.TEMPLATE_COMPLETION, 0).completion_prompt(model, "hi") == llama3_bos + "hi"
    assert InjectedFault(Fault.BOS_IF_MISSING, 0).completion_prompt(model, "hi") == llama3_bos + "hi"
    assert InjectedFault(Fault.BOS_IF_MISSING, 0).completion_prompt(model, llama3_bos + "hi") == llama3_bos + "hi"
    assert InjectedFault(Fault.WRONG_USAGE, 0).completion_prompt(model, "hi") == "hi"


def test_errors_are_answered_wrongly_one_status_per_fault() -> None:
    def answered(fault: Fault, status: int) -> APIError:
        error = APIError(status, "e", headers={"Retry-After": "1", "x-concurrency-limit": "30"})
        InjectedFault(fault, 0).error(error)
        return error

    assert answered(Fault.UNKNOWN_MODEL_400, 404).status == 400
    assert answered(Fault.UNKNOWN_MODEL_400, 400).status == 400
    assert answered(Fault.STATUS_422, 400).status == 422
    assert answered(Fault.STATUS_422, 404).status == 404
    assert answered(Fault.NO_RETRY_AFTER, 429).headers == {"x-concurrency-limit": "30"}
    assert answered(Fault.NO_RETRY_AFTER, 503).headers["Retry-After"] == "1"
