"""`harness.records.outputs`: the fields a structured or tool workload adds, and the check of each answer."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from harness.records.outputs import Call, OutputSpec

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def tools_file(tmp_path: Path) -> Path:
    path = tmp_path / "tools.json"
    path.write_bytes(orjson.dumps([WEATHER]))
    return path


def call(arguments: str, name: str = "get_weather", ident: str = "call_1") -> Call:
    return Call(ident, "function", name, [arguments])


def test_json_mode_and_a_schema(tmp_path: Path) -> None:
    assert OutputSpec.parse(None, None, None) is None
    json_mode = OutputSpec.parse("json", None, None)
    assert json_mode is not None and json_mode.body() == {"response_format": {"type": "json_object"}}
    assert json_mode.check('{"a": 1}', [], "stop") is None
    assert "not JSON" in (json_mode.check('{"a": 1} ok', [], "stop") or "")
    assert "not an object" in (json_mode.check("[1]", [], "stop") or "")
    assert json_mode.check('{"a": ', [], "length") is None  # cut by the limit: not judged
    schema = tmp_path / "person.json"
    schema.write_bytes(orjson.dumps({"type": "object", "required": ["name"]}))
    person = OutputSpec.parse(f"schema:{schema}", None, None)
    assert person is not None and person.body()["response_format"]["json_schema"]["name"] == "person"
    assert person.check('{"name": "x"}', [], "stop") is None
    assert "breaks the schema" in (person.check('{"age": 3}', [], "stop") or "")


def test_tool_calls_are_checked_against_the_choice_and_the_parameters(tmp_path: Path) -> None:
    required = OutputSpec.parse(None, tools_file(tmp_path), "required")
    assert required is not None and required.body()["tool_choice"] == "required"
    assert required.check("", [call('{"city": "Paris"}')], "tool_calls") is None
    assert "no tool call" in (required.check("hello", [], "stop") or "")
    assert "not JSON" in (required.check("", [call('{"city": "Paris"')], "tool_calls") or "")
    assert "break the parameters" in (required.check("", [call('{"town": "Paris"}')], "tool_calls") or "")
    assert "not offered" in (required.check("", [call("{}", name="other")], "tool_calls") or "")
    assert "finish_reason" in (required.check("", [call('{"city": "Paris"}')], "stop") or "")
    twice = [call('{"city": "a"}'), call('{"city": "b"}')]
    assert "repeat" in (required.check("", twice, "tool_calls") or "")
    named = OutputSpec.parse(None, tools_file(tmp_path), "get_weather")
    assert named is not None and named.body()["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }
    none = OutputSpec.parse(None, tools_file(tmp_path), "none")
    assert none is not None and "although tool_choice was none" in (none.check("", [call("{}")], "tool_calls") or "")
    auto = OutputSpec.parse(None, tools_file(tmp_path), None)
    assert auto is not None and auto.check("plain text", [], "stop") is None


def test_bad_options_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="json or schema:FILE"):
        OutputSpec.parse("yaml", None, None)
    with pytest.raises(ValueError, match="needs --tools"):
        OutputSpec.parse(None, None, "required")
    with pytest.raises(ValueError, match="none of"):
        OutputSpec.parse(None, tools_file(tmp_path), "nope")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        OutputSpec.parse(f"schema:{broken}", None, None)
