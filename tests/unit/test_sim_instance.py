"""The simulator's JSON Schema instances: every one validates, and its text re-tokenizes to its token count."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from jsonschema.validators import validator_for

from reference_server.engines.sim.catalog import FAMILY_SPECIAL_TOKENS
from reference_server.engines.sim.instance import dumps, free_object, instance
from reference_server.engines.sim.tokenizer import SimTokenizer

WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location"],
}
# What Pydantic writes for a model with a list of sub-models (OpenAI's structured-outputs example).
STEPS: dict[str, Any] = {
    "$defs": {
        "Step": {
            "type": "object",
            "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
            "required": ["explanation", "output"],
            "additionalProperties": False,
        }
    },
    "type": "object",
    "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}}, "final_answer": {"type": "string"}},
    "required": ["steps", "final_answer"],
    "additionalProperties": False,
}
NUMBERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "count": {"type": "integer", "multipleOf": 5, "minimum": 1},
        "narrow": {"type": "number", "minimum": -1.5, "maximum": -1.25},
        "tiny": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.01},  # no 2-decimal value inside
        "below": {"type": "integer", "exclusiveMaximum": -3},
        "flag": {"type": "boolean"},
        "nothing": {"type": "null"},
    },
    "required": ["age", "score", "count", "narrow", "tiny", "below", "flag", "nothing"],
}
STRINGS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "minLength": 3, "maxLength": 3},
        "essay": {"type": "string", "minLength": 40, "format": "ignored-format"},
        "kind": {"const": "fixed"},
        "maybe": {"type": ["string", "null"]},
        "tags": {
            "type": "array",
            "items": {"enum": ["a", "b", "c"]},
            "minItems": 2,
            "maxItems": 2,
            "uniqueItems": True,
        },
    },
    "required": ["code", "essay", "kind", "maybe", "tags"],
    "additionalProperties": False,
}
# Draft 7's `definitions`, a recursive tree: only a depth limit ends it.
TREE: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {
        "node": {
            "type": "object",
            "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}},
            "required": ["value", "children"],
        }
    },
    "$ref": "#/definitions/node",
}
# What the HTTP layer sends for `tool_choice: "required"`: one of the offered functions, named.
REQUIRED_CHOICE: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"name": {"const": "get_weather"}, "arguments": WEATHER},
            "required": ["name", "arguments"],
        },
        {
            "type": "object",
            "properties": {"name": {"const": "get_time"}, "arguments": {"type": "object", "properties": {}}},
            "required": ["name", "arguments"],
        },
    ]
}
MERGED: dict[str, Any] = {
    "$defs": {"Base": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id"]}},
    "allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"extra": {"type": "boolean"}}, "required": ["extra"]}],
    "oneOf": [{"required": ["left"], "properties": {"left": {"type": "string"}}}],
}
DRAFT4_EXCLUSIVE: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "integer",
    "minimum": 1,
    "exclusiveMinimum": True,
    "maximum": 3,
    "exclusiveMaximum": True,
}
FREE_FORM: dict[str, Any] = {
    "type": "object",
    "minProperties": 2,
    "maxProperties": 3,
    "additionalProperties": {"type": "integer"},
}
TOP_LEVEL_LIST: dict[str, Any] = {
    "type": "array",
    "prefixItems": [{"type": "string", "maxLength": 1}, {"type": ["integer", "boolean"]}],
    "items": False,
    "minItems": 2,
}
SCHEMAS = {
    "weather": WEATHER,
    "steps": STEPS,
    "numbers": NUMBERS,
    "strings": STRINGS,
    "tree": TREE,
    "required_choice": REQUIRED_CHOICE,
    "merged": MERGED,
    "draft4_exclusive": DRAFT4_EXCLUSIVE,
    "free_form": FREE_FORM,
    "top_level_list": TOP_LEVEL_LIST,
}
TOKENIZERS = [SimTokenizer(tokens) for tokens in FAMILY_SPECIAL_TOKENS.values()]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_instance_validates_against_its_schema(name: str) -> None:
    schema = SCHEMAS[name]
    validator = validator_for(schema)(schema)
    validator.check_schema(schema)
    for seed in range(150):
        value = instance(schema, random.Random(seed))
        errors = [e.message for e in validator.iter_errors(value)]
        assert errors == [], (seed, value)
        assert json.loads(dumps(value)) == value


def test_instances_use_their_freedom() -> None:
    """Optional parts come and go and values vary, rather than one fixed instance per schema."""
    values = [instance(WEATHER, random.Random(seed)) for seed in range(60)]
    assert any("unit" in v for v in values) and any("unit" not in v for v in values)
    assert len({v["location"] for v in values}) > 30
    assert instance(DRAFT4_EXCLUSIVE, random.Random(0)) == 2
    assert {instance(REQUIRED_CHOICE, random.Random(s))["name"] for s in range(30)} == {"get_weather", "get_time"}
    trees = [instance(TREE, random.Random(seed)) for seed in range(30)]
    assert any(t["children"] for t in trees)


def test_the_same_random_state_gives_the_same_instance() -> None:
    assert instance(STEPS, random.Random(5)) == instance(STEPS, random.Random(5))
    assert free_object(random.Random(5), 4) == free_object(random.Random(5), 4)


def test_json_mode_objects_parse_with_the_size_asked_for() -> None:
    for seed in range(50):
        value = free_object(random.Random(seed), 1 + seed % 7)
        assert isinstance(value, dict) and len(value) == 1 + seed % 7
        assert json.loads(dumps(value)) == value


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_text_and_each_of_its_prefixes_re_tokenize_to_their_piece_counts(name: str) -> None:
    for tokenizer in TOKENIZERS:
        for seed in range(10):
            pieces = tokenizer.pieces(dumps(instance(SCHEMAS[name], random.Random(seed))))
            for cut in range(1, len(pieces) + 1):
                assert tokenizer.count("".join(pieces[:cut])) == cut
