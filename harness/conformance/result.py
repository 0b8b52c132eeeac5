"""The suite's JSON result: one entry per check and case, validated by `schemas/conformance_result.json`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from jsonschema import Draft7Validator

import schemas
from harness.conformance.contract import FEATURE_MARKER, MARKERS, Settings
from harness.conformance.features import FEATURES, NOT_OFFERED

SCHEMA = "conformance_result.json"
Outcome = Literal["passed", "failed", "error", "skipped"]
FeatureStatus = Literal["offered", "not offered", "failed"]


@dataclass(frozen=True, slots=True)
class CheckInfo:
    check: str  # the check's function name
    case: str | None  # its parameters, e.g. "chat"
    group: str | None  # its marker
    feature: str | None  # the chat-surface feature it checks (`@pytest.mark.feature`)
    module: str


def _info(item: pytest.Item) -> CheckInfo:
    function = getattr(item, "function", None)
    module = function.__module__.rsplit(".", 1)[-1] if function is not None else item.nodeid.split("::", 1)[0]
    callspec = getattr(item, "callspec", None)
    group = next((m.name for m in item.iter_markers() if m.name in MARKERS), None)
    marker = item.get_closest_marker(FEATURE_MARKER)
    feature = str(marker.args[0]) if marker is not None and marker.args else None
    name = getattr(item, "originalname", item.name)
    return CheckInfo(name, callspec.id if callspec else None, group, feature, module)


def _message(report: pytest.TestReport) -> str:
    """The failure's own message, without pytest's re-telling of the assert expression."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(getattr(crash, "message", "") or report.longreprtext or "")
    return text.split("\nassert ", 1)[0].strip()[:2000]


class ResultCollector:
    """A pytest plugin object that records every check's outcome as the session runs."""

    def __init__(self) -> None:
        self.started_at = datetime.now(UTC)
        self._started_s = time.perf_counter()
        self.infos: dict[str, CheckInfo] = {}
        self.outcomes: dict[str, tuple[Outcome, float, str | None]] = {}
        self.not_run: list[dict[str, str]] = []

    def record_not_run(self, item: pytest.Item, reason: str) -> None:
        self.not_run.append({"check": _info(item).check, "reason": reason})

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.infos = {item.nodeid: _info(item) for item in items}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        previous, duration, message = self.outcomes.get(report.nodeid, ("passed", 0.0, None))
        duration += report.duration
        outcome: Outcome = previous
        if report.failed and previous not in ("failed", "error"):
            outcome, message = ("failed" if report.when == "call" else "error"), _message(report)
        elif report.skipped and previous == "passed":
            outcome = "skipped"
            reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else _message(report)
            message = reason.removeprefix("Skipped: ")
        self.outcomes[report.nodeid] = (outcome, duration, message)

    def result(self, settings: Settings | None, run_id: str | None) -> dict[str, Any]:
        checks = []
        for nodeid, info in self.infos.items():
            outcome, duration, message = self.outcomes.get(nodeid, ("error", 0.0, "the check did not run"))
            checks.append(
                {
                    "check": info.check,
                    "case": info.case,
                    "group": info.group,
                    "feature": info.feature,
                    "module": info.module,
                    "nodeid": nodeid,
                    "outcome": outcome,
                    "duration_s": round(duration, 6),
                    "message": message,
                }
            )
        counts = {k: sum(1 for c in checks if c["outcome"] == k) for k in ("passed", "failed", "error", "skipped")}
        target = settings.target if settings is not None else None
        return {
            "schema_version": 1,
            "run_id": run_id,
            "started_at": self.started_at.isoformat(),
            "duration_s": round(time.perf_counter() - self._started_s, 6),
            "passed": bool(checks) and counts["failed"] == counts["error"] == 0,
            "target": None
            if target is None or settings is None
            else {
                "base_url": target.base_url,
                "model": target.model,
                "profile": target.profile,
                "concurrency_limit": target.concurrency_limit,
                "second_key": target.api_key_2 is not None,
                "launched": settings.launched,
                "description": target.description,
                "extra_headers": [name for name, _ in settings.extra_headers],
            },
            "summary": {"total": len(checks), **counts, "not_run": len(self.not_run)},
            "checks": checks,
            "not_run": self.not_run,
            "features": features(checks),
        }


def features(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each feature whose checks ran: failed if one of them failed, else not offered if its probe was refused,
    else offered; with the checks behind the status and the first message that explains it."""
    found: dict[str, dict[str, Any]] = {}
    for feature in FEATURES:
        mine = [c for c in checks if c["feature"] == feature.name]
        if not mine:
            continue
        failed = [c for c in mine if c["outcome"] in ("failed", "error")]
        refused = [c for c in mine if c["outcome"] == "skipped" and (c["message"] or "").startswith(NOT_OFFERED)]
        status: FeatureStatus = "failed" if failed else "not offered" if refused else "offered"
        behind = failed or refused
        found[feature.name] = {
            "status": status,
            "checks": sorted({c["check"] for c in behind or mine}),
            "message": behind[0]["message"] if behind else None,
        }
    return found


def features_line(result: dict[str, Any]) -> str | None:
    """One line for the terminal: the features by status, or None when no feature check ran."""
    by_status: dict[str, list[str]] = {}
    for name, found in result["features"].items():
        by_status.setdefault(found["status"], []).append(name)
    parts = [f"{status}: {', '.join(names)}" for status, names in sorted(by_status.items()) if names]
    return "features — " + "; ".join(parts) if parts else None


def validation_errors(result: object) -> list[str]:
    validator = Draft7Validator(schemas.load(SCHEMA))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(result)]


def write(path: Path, result: dict[str, Any]) -> None:
    problems = validation_errors(result)
    if problems:
        raise ValueError(f"the conformance result does not match {SCHEMA}: {problems[:3]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
