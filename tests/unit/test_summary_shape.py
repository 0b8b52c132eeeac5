"""The summary's TypedDicts and `schemas/summary.json` name the same fields, and the types never promise a field the
schema lets a summary lack (older summaries, or figures before their verdict, are read through them)."""

from __future__ import annotations

from typing import Any, is_typeddict

import pytest

import schemas
from harness.analysis import shape

SCHEMA = schemas.load("summary.json")
DEFINITIONS = SCHEMA["definitions"]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A schema node with its $ref followed, its nullable `oneOf` unwrapped and its `allOf` parts merged."""
    if "$ref" in node:
        return resolve(DEFINITIONS[node["$ref"].rsplit("/", 1)[1]])
    if "oneOf" in node:
        (found,) = [resolve(n) for n in node["oneOf"] if n.get("type") != "null"]
        return found
    if "allOf" in node:
        parts = [resolve(n) for n in node["allOf"]]
        return {
            "properties": {k: v for p in parts for k, v in p.get("properties", {}).items()},
            "required": [r for p in parts for r in p.get("required", [])],
        }
    return node


def at(*path: str) -> dict[str, Any]:
    node = resolve(SCHEMA)
    for key in path:
        node = resolve(node["properties"][key]) if key != "[]" else resolve(node["items"])
    return node


CASES: list[tuple[type, dict[str, Any]]] = [
    (shape.Summary, resolve(SCHEMA)),
    (shape.Table, resolve(DEFINITIONS["table"])),
    (shape.StepSummary, resolve(DEFINITIONS["step"])),
    (shape.Distribution, resolve(DEFINITIONS["distribution"])),
    (shape.Validity, resolve(DEFINITIONS["validity"])),
    (shape.Worst, resolve(resolve(DEFINITIONS["validity"])["properties"]["worst"])),
    (shape.Requests, at("overall", "requests")),
    (shape.Rates, at("overall", "rates")),
    (shape.Tokens, at("overall", "tokens")),
    (shape.Fairness, at("overall", "fairness")),
    (shape.Load, at("overall", "load")),
    (shape.FirstError, at("overall", "first_error")),
    (shape.Offered, at("overall", "offered")),
    (shape.Service, at("overall", "service")),
    (shape.Unserved, at("overall", "service", "unserved_at_end")),
    (shape.Knee, at("knee")),
    (shape.Limit, at("limit")),
    (shape.LimitStep, at("limit", "steps", "[]")),
    (shape.TimingError, at("timing_error_ms")),
    (shape.ReceivedBy, at("timing_error_ms", "received_by")),
    (shape.Conformance, at("conformance")),
    (shape.Failure, at("conformance", "failures", "[]")),
    (shape.Slo, at("slo")),
    (shape.Traffic, at("traffic")),
    (shape.TrafficTurn, at("traffic", "turns", "[]")),
    (shape.TrafficContext, at("traffic", "context", "[]")),
    (shape.TrafficCache, at("traffic", "cache")),
    (shape.TrafficSessions, at("traffic", "sessions")),
    (shape.TrafficReplay, at("traffic", "replay")),
    (shape.Saturation, at("steps", "[]", "saturation")),
    (shape.Trend, resolve(DEFINITIONS["trend"])),
    (shape.SteadyState, at("steps", "[]", "steady_state")),
    (shape.Capacity, at("capacity")),
    (shape.CapacitySlo, at("capacity", "slo")),
    (shape.Bracket, at("capacity", "bracket")),
    (shape.Interval, at("capacity", "interval")),
    (shape.Trial, resolve(DEFINITIONS["trial"])),
    (shape.Check, resolve(DEFINITIONS["check"])),
    (shape.Repeats, at("repeats")),
    (shape.RepeatedStep, at("repeats", "steps", "[]")),
    (shape.Spread, resolve(DEFINITIONS["spread"])),
    (shape.ServerStep, resolve(DEFINITIONS["server_step"])),
    (shape.ServerGauge, resolve(DEFINITIONS["server_gauge"])),
    (shape.ServerDistribution, resolve(DEFINITIONS["server_distribution"])),
    (shape.TtftGap, resolve(resolve(DEFINITIONS["server_step"])["properties"]["ttft_gap_ms"])),
    (shape.ServerMetricsSummary, at("server_metrics")),
    (shape.RunEnvironment, at("environment")),
    (shape.ClientMachine, at("environment", "client")),
    (shape.TargetSoftware, at("environment", "target")),
]


@pytest.mark.parametrize(("typed", "node"), CASES, ids=[t.__name__ for t, _ in CASES])
def test_each_type_names_the_fields_of_its_part_of_the_schema(typed: type, node: dict[str, Any]) -> None:
    assert is_typeddict(typed)
    assert set(typed.__annotations__) | set(typed.__required_keys__ | typed.__optional_keys__) == set(
        node["properties"]
    )
    assert typed.__required_keys__ <= set(node.get("required", ())), "a type promises a field the schema may lack"


def test_every_type_of_the_module_is_held_to_the_schema() -> None:
    typed = {name for name, value in vars(shape).items() if is_typeddict(value)}
    # Bounds and Causes are a distribution's statistics again; Figures is Summary before its verdict; TruthCell and
    # Tolerance are additionalProperties' values, KeyShare too.
    assert typed - {t.__name__ for t, _ in CASES} == {
        "Bounds",
        "Causes",
        "Figures",
        "TruthCell",
        "Tolerance",
        "KeyShare",
    }
