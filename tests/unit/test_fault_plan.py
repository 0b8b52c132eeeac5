"""A request's fault plan: the plan without a fault changes nothing; a header is parsed once into a plan whose
hooks each break one thing; a header naming no fault is refused at the door."""

from __future__ import annotations

import orjson
import pytest

from reference_server.auth import KeyRing
from reference_server.config import ApiKey, digest
from reference_server.engines.base import Delta, StructuredOutput
from reference_server.errors import APIError
from reference_server.faults import NO_FAULT, Fault, InjectedFault, UnknownFault, plan_of
from reference_server.profile import DONE
from reference_server.protocol import CompletionRequest, RequestParser
from reference_server.tools import new_call_id

RING = KeyRing([ApiKey("a", digest("esecret_a_key_1234"))])
PARSER = RequestParser()
CHUNK = {"id": "i", "object": "text_completion", "created": 1, "model": "m", "choices": [{"index": 0, "text": "a"}]}


def request(body: dict[str, object]) -> CompletionRequest:
    return PARSER.parse("chat", orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}))


def test_the_plan_without_a_fault_hands_back_what_it_is_given() -> None:
    req = request({})
    delta = Delta(text="a", token_count=1)
    body = {"id": "x", "choices": []}
    assert plan_of(None) is NO_FAULT and plan_of("") is NO_FAULT
    assert not NO_FAULT.plain_errors and not NO_FAULT.rewrites_chunks
    assert NO_FAULT.authenticate(RING, "Bearer esecret_a_key_1234").name == "a"
    assert NO_FAULT.request_body("chat", b"{}") == b"{}"
    assert NO_FAULT.for_request(req) is NO_FAULT
    assert NO_FAULT.completion_prompt("m", "verbatim") == "verbatim"
    assert NO_FAULT.ident("m-" + "a" * 32) == "m-" + "a" * 32
    assert NO_FAULT.call_ids() is new_call_id
    assert NO_FAULT.delta(delta, req) is delta and NO_FAULT.stream_delta(delta, 1, req) is delta
    assert NO_FAULT.body(body) is body
    assert NO_FAULT.stream_content_type() == "text/event-stream" and NO_FAULT.sends_role()
    assert NO_FAULT.events(0, CHUNK) == [b"data: " + orjson.dumps(CHUNK) + b"\n\n"]
    assert NO_FAULT.stall_ms(1) == 0 and not NO_FAULT.reset_after(0)
    assert NO_FAULT.done() == DONE
    error = APIError(404, "no such model")
    NO_FAULT.error(error)
    assert error.status == 404


def test_an_unknown_fault_is_refused_where_the_key_would_be_checked() -> None:
    plan = plan_of("meltdown:3")
    assert isinstance(plan, UnknownFault) and not plan.plain_errors
    with pytest.raises(APIError) as caught:
        plan.authenticate(RING, "Bearer esecret_a_key_1234")
    assert caught.value.status == 400 and caught.value.param == "x-fault"
    assert "meltdown:3" in caught.value.message


def test_only_a_bare_not_envelope_answers_errors_in_plain_text() -> None:
    assert plan_of("not_envelope").plain_errors
    assert not plan_of("not_envelope:1").plain_errors
    assert not plan_of("wrong_usage").plain_errors
    assert plan_of("wrong_usage").rewrites_chunks


def test_faults_about_a_lone_choice_know_the_requests_n() -> None:
    lone, several = request({}), request({"n": 2})
    plan = InjectedFault(Fault.MISSING_ROLE, 0)
    assert plan.for_request(several) == InjectedFault(Fault.MISSING_ROLE, 0, choices=2)
    assert not plan.for_request(lone).sends_role() and plan.for_request(several).sends_role()
    body = {"choices": [{"index": 0}, {"index": 1}]}
    indexless = InjectedFault(Fault.NO_CHOICE_INDEX, 0)
    assert indexless.for_request(lone).body({"choices": [{"index": 0}]}) == {"choices": [{}]}
    assert indexless.for_request(several).body(body) == body


def test_stream_hooks_each_break_one_thing() -> None:
    req = request({})
    assert InjectedFault(Fault.WRONG_CONTENT_TYPE, 0).stream_content_type() == "application/json"
    first = Delta(text="Hel", token_count=1)
    drift = InjectedFault(Fault.TEXT_DRIFT, 0)
    assert drift.stream_delta(first, 1, req).text == "Hel~"
    assert drift.stream_delta(first, 2, req) is first
    assert InjectedFault(Fault.REPEATED_ID, 0).ident("m-" + "ab" * 16) == "m-" + "0" * 32
    ids = InjectedFault(Fault.REPEATED_TOOL_ID, 0).call_ids()
    assert ids() == ids() == "call_" + "0" * 24


def test_engine_deltas_end_wrongly_as_the_fault_says() -> None:
    end = Delta(text="}", token_count=1, finish_reason="stop")
    assert InjectedFault(Fault.LENGTH_ON_EOS, 0).delta(end, request({})).finish_reason == "length"
    assert InjectedFault(Fault.LENGTH_ON_EOS, 0).delta(end, request({"stop": "x"})).finish_reason == "stop"
    json_mode = request({"response_format": {"type": "json_object"}})
    assert InjectedFault(Fault.JSON_TRAILING_TEXT, 0).delta(end, json_mode).text == "} ok"
    assert InjectedFault(Fault.JSON_TRAILING_TEXT, 0).delta(end, request({})).text == "}"


def test_the_schema_of_a_json_schema_request_loses_its_first_required_property() -> None:
    schema = {"type": "object", "required": ["a", "b"], "properties": {"a": {}, "b": {}}}
    asked = request({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}})
    plan = InjectedFault(Fault.SCHEMA_VIOLATION, 0)
    guided = plan.structured(asked, StructuredOutput(schema))
    assert guided is not None and guided.schema is not None
    assert dict(guided.schema) == {
        "type": "object",
        "required": ["b"],
        "properties": {"b": {}},
        "additionalProperties": False,
    }
    json_mode = StructuredOutput(None)
    assert plan.structured(request({"response_format": {"type": "json_object"}}), json_mode) is json_mode
    assert schema["required"] == ["a", "b"]  # the request's own schema is untouched


def test_models_endpoints_break_one_field() -> None:
    listing = {"object": "list", "data": [{"id": "m"}]}
    assert InjectedFault(Fault.UNLISTED_MODEL, 0).model_list(listing)["data"] == []
    assert InjectedFault(Fault.UNLISTED_MODEL, 0).model_card({"id": "m"}) == {"id": "m"}
    assert InjectedFault(Fault.WRONG_MODEL_CARD, 0).model_card({"id": "m"}) == {"id": "m-other"}
