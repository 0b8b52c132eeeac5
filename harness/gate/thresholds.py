"""What a gate reads: its thresholds (TOML, `schemas/gate_thresholds.json`) and a run's summary, both validated.

A summary that is not VALID cannot be judged: its numbers cannot be trusted, or it measured nothing.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, cast

import jsonschema
import orjson

import schemas
from harness.analysis.shape import Summary
from harness.gate.verdict import Unusable

DEFAULT_THRESHOLDS = "gate_default.toml"


def _validated(instance: object, schema_name: str, what: str) -> None:
    errors = list(jsonschema.Draft7Validator(schemas.load(schema_name)).iter_errors(instance))
    if errors:
        where = "/".join(map(str, errors[0].absolute_path)) or "(root)"
        raise Unusable(f"{what} does not match schemas/{schema_name}: {where}: {errors[0].message}")


def load_thresholds(path: Path | None) -> dict[str, Any]:
    if path is None:
        text = resources.files("harness.gate").joinpath(DEFAULT_THRESHOLDS).read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        thresholds = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Unusable(f"{path or DEFAULT_THRESHOLDS}: {exc}") from exc
    _validated(thresholds, "gate_thresholds.json", f"{path or DEFAULT_THRESHOLDS}")
    return thresholds


def load_summary(path: Path, what: str) -> Summary:
    try:
        summary = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise Unusable(f"{what} {path}: {exc}") from exc
    _validated(summary, "summary.json", f"{what} {path}")
    verdict = summary["validity"]["verdict"]
    if verdict != "VALID":
        reasons = "; ".join(summary["validity"]["reasons"]) or "no reason given"
        why = "its numbers cannot be trusted" if verdict == "INVALID" else "it measured nothing"
        raise Unusable(f"{what} {summary['run_id']} is {verdict} ({why}: {reasons})")
    return cast(Summary, summary)
