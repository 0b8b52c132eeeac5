"""Structured outputs: JSON mode's output parses as a JSON object; a JSON schema's output validates against it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from harness.conformance.features import PERSON, Features

__all__ = ["test_json_mode", "test_json_schema"]


def _content(name: str, body: dict[str, Any]) -> Any:
    """The output of a structured request, as JSON: it must parse (the finish reason is another check's)."""
    choice = body["choices"][0]
    text = (choice.get("message") or {}).get("content")
    assert isinstance(text, str), f"{name}: the message has no content: {choice!r}"
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        cut = " (it was cut at max_tokens: the JSON never closed)" if choice.get("finish_reason") == "length" else ""
        raise AssertionError(f"{name}: the output is not JSON{cut} ({exc}): {text[:300]!r}") from None


@pytest.mark.structured
@pytest.mark.feature("json_mode")
def test_json_mode(features: Features) -> None:
    """`response_format: {"type": "json_object"}`: the output is one JSON object and nothing else."""
    value = _content("json_mode", features.body("json_mode"))
    assert isinstance(value, dict), f"json_mode: the output parses, but as {type(value).__name__}, not an object"


@pytest.mark.structured
@pytest.mark.feature("json_schema")
def test_json_schema(features: Features) -> None:
    """`response_format: {"type": "json_schema", ...}`: the output validates against the schema."""
    value = _content("json_schema", features.body("json_schema"))
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in Draft202012Validator(PERSON).iter_errors(value)
    ]
    assert not problems, f"json_schema: the output {value!r} breaks the schema: {problems}"
