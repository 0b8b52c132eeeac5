"""The feature matrix and the features of a conformance result: statuses from outcomes, columns, the README block."""

from __future__ import annotations

from typing import Any

import pytest

from harness.conformance import matrix
from harness.conformance.features import FEATURES
from harness.conformance.result import features, features_line


def check(name: str, feature: str | None, outcome: str = "passed", message: str | None = None) -> dict[str, Any]:
    return {"check": name, "feature": feature, "outcome": outcome, "message": message}


def result(*checks: dict[str, Any]) -> dict[str, Any]:
    return {"checks": list(checks), "features": features(list(checks))}


def test_a_feature_fails_with_one_failed_check_and_is_not_offered_when_its_probe_was_refused() -> None:
    found = features(
        [
            check("test_tool_call_named", "tools", "skipped", "not offered: tools was refused with HTTP 400: no"),
            check("test_tool_stream", "tools", "skipped", "not offered: tools was refused with HTTP 400: no"),
            check("test_json_mode", "json_mode", "failed", "json_mode: the output is not JSON"),
            check("test_json_schema", "json_schema", "error", "boom"),
            check("test_n_choices", "n"),
            check("test_model_list", None),
        ]
    )
    assert {k: v["status"] for k, v in found.items()} == {
        "tools": "not offered",
        "json_mode": "failed",
        "json_schema": "failed",
        "n": "offered",
    }
    assert found["tools"]["checks"] == ["test_tool_call_named", "test_tool_stream"]
    assert found["json_mode"]["message"] == "json_mode: the output is not JSON"
    assert found["n"] == {"status": "offered", "checks": ["test_n_choices"], "message": None}


def test_a_skip_for_another_reason_is_not_a_refusal() -> None:
    found = features([check("test_n_choices", "n", "skipped", "needs a second key")])
    assert found["n"]["status"] == "offered"


def test_the_terminal_line_groups_features_by_status() -> None:
    r = result(check("test_n_choices", "n"), check("test_json_mode", "json_mode", "failed", "x"))
    assert features_line(r) == "features — failed: json_mode; offered: n"
    assert features_line(result(check("test_model_list", None))) is None


def test_a_column_says_passes_not_offered_or_which_checks_failed_and_counts_the_rest() -> None:
    r = result(
        check("test_n_choices", "n"),
        check("test_tool_call_ids", "tools", "failed", "shared ids"),
        check("test_tool_stream", "tools", "failed", "drift"),
        check("test_tool_choice_none", "tools"),
        check("test_json_mode", "json_mode", "skipped", "not offered: json_mode was refused with HTTP 400: no"),
        check("test_model_list", None),
        check("test_missing_key", None, "failed", "401 body"),
    )
    cells = dict(zip(matrix.ROWS, matrix.column(r), strict=True))
    by_name = {f.name: f.label for f in FEATURES}
    assert cells[by_name["n"]] == "passes"
    assert cells[by_name["tools"]] == "**fails** `test_tool_call_ids`, `test_tool_stream`"
    assert cells[by_name["json_mode"]] == "not offered"
    assert cells[by_name["seed"]] == "not run"
    assert cells[matrix.OTHERS] == "1 of 2 pass"


def test_updating_one_column_keeps_the_others_and_the_text_around() -> None:
    a = matrix.column(result(check("test_n_choices", "n")))
    b = matrix.column(result(check("test_n_choices", "n", "failed", "x")))
    doc = f"intro\n{matrix.START}\n{matrix.END}\noutro\n"
    doc = matrix.update(doc, {"A": a})
    doc = matrix.update(doc, {"B": b})
    assert matrix.parse(doc) == [("A", a), ("B", b)]
    doc = matrix.update(doc, {"A": b})
    assert matrix.readme_column(doc, "A") == b and matrix.readme_column(doc, "B") == b
    assert doc.startswith("intro\n") and doc.endswith("\noutro\n")
    assert matrix.readme_column(doc, "C") is None


def test_a_document_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="feature-matrix"):
        matrix.update("no block here", {"A": ["x"] * len(matrix.ROWS)})
