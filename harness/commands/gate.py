"""`harness gate SUMMARY --thresholds FILE [--baseline SUMMARY]`: pass or fail a run, for CI.

Absolute thresholds (a TOML file validated by `schemas/gate_thresholds.json`) are checked against the summary;
with a baseline, the per-request samples of both runs (the records beside each summary) are compared
statistically (`harness.analysis.regression`). Exit 0 when every check passes, 1 when one fails, 2 when the input cannot
be judged: a summary or thresholds file that does not validate, an INVALID run or baseline (its client was the
bottleneck), or a baseline that measured another target or another configuration. A JUnit XML file and a
Markdown verdict are written beside the summary (or where asked).
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

import jsonschema
import orjson

import schemas
from harness.analysis import regression
from harness.analysis.frame import latency_samples
from harness.analysis.regression import Comparison, Settings
from harness.analysis.stats import Floats
from harness.analysis.sweep import limit_behaviour
from harness.records import rundir

DEFAULT_THRESHOLDS = "gate_default.toml"
Status = Literal["pass", "fail", "skip"]
PASS, FAIL, UNUSABLE = 0, 1, 2

# Threshold → (path in the chosen table, bound). Values a run lacks (None) are skipped.
_TABLE_BOUNDS: dict[str, tuple[tuple[str, ...], Literal["max", "min"]]] = {
    **{
        f"{m}_{q}_ms_max": (("latency_ms", m, q), "max") for m in ("ttft", "itl", "tpot", "e2e") for q in ("p50", "p99")
    },
    "e2e_from_scheduled_p99_ms_max": (("latency_ms", "e2e_from_scheduled", "p99"), "max"),
    "output_tokens_per_s_min": (("throughput", "output_tokens_per_s"), "min"),
    "requests_per_s_min": (("throughput", "requests_per_s"), "min"),
    "goodput_requests_per_s_min": (("throughput", "goodput_requests_per_s"), "min"),
    "goodput_fraction_min": (("goodput_fraction",), "min"),
    "error_rate_max": (("rates", "error"), "max"),
    "rate_limited_rate_max": (("rates", "rate_limited"), "max"),
    "chunk_conformance_error_rate_max": (("rates", "conformance_error"), "max"),
    "starved_users_max": (("service", "starved_users"), "max"),
    "wait_for_service_p99_ms_max": (("service", "wait_for_service_ms", "p99"), "max"),
}
_RUN_BOUNDS: dict[str, tuple[tuple[str, ...], Literal["max", "min"]]] = {
    f"timing_error_{m}_{q}_ms_max": (("timing_error_ms", m, q), "max") for m in ("ttft", "itl") for q in ("p50", "p99")
}


class Unusable(Exception):
    """The input cannot be judged (exit 2)."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    value: str
    threshold: str
    detail: str = ""


@dataclass(slots=True)
class Verdict:
    run_id: str
    checks: list[Check] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    unusable: str | None = None

    @property
    def code(self) -> int:
        if self.unusable is not None:
            return UNUSABLE
        failed = any(c.status == "fail" for c in self.checks) or any(c.status == "fail" for c in self.comparisons)
        return FAIL if failed else PASS

    @property
    def word(self) -> str:
        return ("PASS", "FAIL", "UNUSABLE")[self.code]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("summary", type=Path, help="reports/<run-id>/summary.json")
    parser.add_argument("--thresholds", type=Path, help=f"TOML thresholds (default: the shipped {DEFAULT_THRESHOLDS})")
    parser.add_argument("--baseline", type=Path, help="the baseline's summary.json (its records lie beside it)")
    parser.add_argument("--junit", type=Path, help="JUnit XML output (default: gate.xml beside the summary)")
    parser.add_argument("--markdown", type=Path, help="Markdown verdict (default: gate.md beside the summary)")


def _validated(instance: object, schema_name: str, what: str) -> None:
    errors = list(jsonschema.Draft7Validator(schemas.load(schema_name)).iter_errors(instance))
    if errors:
        where = "/".join(map(str, errors[0].absolute_path)) or "(root)"
        raise Unusable(f"{what} does not match schemas/{schema_name}: {where}: {errors[0].message}")


def load_thresholds(path: Path | None) -> dict[str, Any]:
    if path is None:
        text = resources.files("harness.commands").joinpath(DEFAULT_THRESHOLDS).read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        thresholds = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Unusable(f"{path or DEFAULT_THRESHOLDS}: {exc}") from exc
    _validated(thresholds, "gate_thresholds.json", f"{path or DEFAULT_THRESHOLDS}")
    return thresholds


def load_summary(path: Path, what: str) -> dict[str, Any]:
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
    return dict(summary)


def _dig(obj: Mapping[str, Any] | None, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _bound(name: str, value: Any, limit: float, kind: str) -> Check:
    if value is None:
        return Check(name, "skip", "–", f"{'≤' if kind == 'max' else '≥'} {limit:g}", "not measured in this run")
    ok = value <= limit if kind == "max" else value >= limit
    return Check(name, "pass" if ok else "fail", f"{value:g}", f"{'≤' if kind == 'max' else '≥'} {limit:g}")


def _table(summary: Mapping[str, Any], step: str) -> Mapping[str, Any]:
    if step == "overall":
        return dict(summary["overall"])
    for s in summary["steps"]:
        if s["label"] == step:
            return dict(s)
    raise Unusable(f"thresholds name step {step!r}, which the run does not have")


def _limit(summary: Mapping[str, Any], absolute: Mapping[str, Any]) -> dict[str, Any] | None:
    recorded = summary.get("limit")
    wanted = absolute.get("concurrency_limit") or (recorded or {}).get("concurrency_limit") or 30
    if recorded and recorded["concurrency_limit"] == wanted:
        return dict(recorded)
    keys = (recorded or {}).get("keys") or len((summary["overall"].get("fairness") or {}).get("keys") or {}) or 1
    return limit_behaviour(summary["steps"], wanted, keys)


def absolute_checks(summary: Mapping[str, Any], absolute: Mapping[str, Any]) -> list[Check]:
    table = _table(summary, absolute.get("step", "overall"))
    checks = [
        _bound(name, _dig(table, path), absolute[name], kind)
        for name, (path, kind) in _TABLE_BOUNDS.items()
        if name in absolute
    ]
    checks += [
        _bound(name, _dig(summary, path), absolute[name], kind)
        for name, (path, kind) in _RUN_BOUNDS.items()
        if name in absolute
    ]
    if "conformance_failures_max" in absolute:
        wanted = absolute["conformance_failures_max"]
        conformance = summary.get("conformance")
        if conformance is None:
            checks.append(Check("conformance_failures_max", "fail", "–", f"≤ {wanted}", "no conformance result"))
        else:
            counts = conformance["summary"]
            check = _bound("conformance_failures_max", counts["failed"] + counts["error"], wanted, "max")
            names = ", ".join(f["nodeid"] for f in conformance["failures"][:5])
            checks.append(dataclasses.replace(check, detail=names) if check.status == "fail" else check)
    if "limit_honoured" in absolute or "error_rate_at_or_below_limit_max" in absolute:
        checks += _limit_checks(_limit(summary, absolute), absolute)
    return checks


def _limit_checks(limit: Mapping[str, Any] | None, absolute: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "limit_honoured" in absolute:
        wanted = absolute["limit_honoured"]
        if limit is None:
            checks.append(Check("limit_honoured", "skip", "–", str(wanted).lower(), "no closed-loop step"))
        else:
            wrong = [s["label"] for s in limit["steps"] if s["honoured"] is False]
            detail = (
                f"limit {limit['concurrency_limit']}: {limit['responses_429_at_or_below']} 429s at or below it, "
                f"{limit['steps_above_without_429']} step(s) above it without any"
                + (f" ({', '.join(wrong)})" if wrong else "")
            )
            ok = limit["honoured"] == wanted
            checks.append(Check("limit_honoured", "pass" if ok else "fail", str(limit["honoured"]).lower(),
                                str(wanted).lower(), detail))  # fmt: skip
    if "error_rate_at_or_below_limit_max" in absolute:
        rate = None if limit is None else limit["error_rate_at_or_below"]
        checks.append(_bound("error_rate_at_or_below_limit_max", rate, absolute["error_rate_at_or_below_limit_max"],
                             "max"))  # fmt: skip
    return checks


def evaluate(summary_path: Path, thresholds_path: Path | None, baseline_path: Path | None) -> Verdict:
    """The verdict on a run; an unusable input gives a verdict with `unusable` set rather than an exception."""
    verdict = Verdict(run_id=str(summary_path))
    try:
        thresholds = load_thresholds(thresholds_path)
        summary = load_summary(summary_path, "run")
        verdict.run_id = summary["run_id"]
        verdict.checks = absolute_checks(summary, thresholds.get("absolute", {}))
        if baseline_path is not None:
            baseline = load_summary(baseline_path, "baseline")
            problems = regression.incompatibilities(baseline, summary)
            if problems:
                raise Unusable("the baseline is not comparable: " + "; ".join(problems))
            verdict.comparisons = regression.compare(
                _samples(baseline_path.parent, "baseline"),
                _samples(summary_path.parent, "run"),
                Settings.from_table(thresholds.get("regression", {})),
            )
    except (Unusable, OSError) as exc:
        verdict.unusable = str(exc)
    return verdict


def _samples(directory: Path, what: str) -> dict[str, Floats]:
    try:
        rd = rundir.load(directory)
    except (ValueError, OSError) as exc:
        raise Unusable(f"{what}: per-request records are needed beside the summary ({exc})") from exc
    return latency_samples(rd.run)


def junit(verdict: Verdict) -> bytes:
    """One test case per check and comparison; an unusable input is one errored case."""
    root = ElementTree.Element("testsuites")
    suite = ElementTree.SubElement(root, "testsuite", name="gate")
    cases: list[tuple[str, str, Status, str]] = [
        ("gate.absolute", c.name, c.status, f"{c.value} (threshold {c.threshold}) {c.detail}".strip())
        for c in verdict.checks
    ]
    cases += [("gate.regression", f"{c.metric}_{c.quantile}", c.status, c.detail) for c in verdict.comparisons]
    for classname, name, status, message in cases:
        case = ElementTree.SubElement(suite, "testcase", classname=classname, name=name, time="0")
        if status == "fail":
            ElementTree.SubElement(case, "failure", message=message).text = message
        elif status == "skip":
            ElementTree.SubElement(case, "skipped", message=message)
    if verdict.unusable is not None:
        case = ElementTree.SubElement(suite, "testcase", classname="gate", name="input", time="0")
        ElementTree.SubElement(case, "error", message=verdict.unusable).text = verdict.unusable
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(sum(1 for *_, status, _ in cases if status == "fail")))
    suite.set("skipped", str(sum(1 for *_, status, _ in cases if status == "skip")))
    suite.set("errors", str(int(verdict.unusable is not None)))
    xml: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1%}"


def markdown(verdict: Verdict) -> str:
    icon = {"pass": "✅", "fail": "❌", "skip": "➖"}
    lines = [f"## Gate: **{verdict.word}** — run `{verdict.run_id}`", ""]
    if verdict.unusable is not None:
        return "\n".join([*lines, f"The input cannot be judged: {verdict.unusable}", ""])
    if verdict.checks:
        lines += ["| check | value | threshold | result |", "|---|---:|---:|---|"]
        lines += [
            f"| `{c.name}` | {c.value} | {c.threshold} | {icon[c.status]} {c.detail.replace('|', '/')} |"
            for c in verdict.checks
        ]
        lines.append("")
    if verdict.comparisons:
        lines += [
            "| vs baseline | n (base / run) | baseline ms | run ms | change | interval | Mann-Whitney p | result |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for c in verdict.comparisons:
            values = [
                f"{c.n_baseline} / {c.n_current}",
                "–" if c.baseline is None else f"{c.baseline:.1f}",
                "–" if c.current is None else f"{c.current:.1f}",
                _pct(c.change),
                "–" if c.ci_low is None else f"[{_pct(c.ci_low)}, {_pct(c.ci_high)}]",
                "–" if c.p_value is None else f"{c.p_value:.3g}",
            ]
            lines.append(f"| {c.metric} {c.quantile} | {' | '.join(values)} | {icon[c.status]} {c.detail} |")
        lines.append("")
    return "\n".join(lines)


def write(verdict: Verdict, summary_path: Path, junit_path: Path | None, markdown_path: Path | None) -> str:
    """Write the JUnit XML and the Markdown verdict (beside the summary unless told where); return the Markdown."""
    text = markdown(verdict)
    for path, default, content in (
        (junit_path, "gate.xml", junit(verdict)),
        (markdown_path, "gate.md", text.encode()),
    ):
        target = path or summary_path.parent / default
        if target.parent.is_dir():
            target.write_bytes(content)
    return text


def run(args: argparse.Namespace) -> int:
    verdict = evaluate(args.summary, args.thresholds, args.baseline)
    print(write(verdict, args.summary, args.junit, args.markdown))
    print(f"gate: {verdict.word} (exit {verdict.code})")
    return verdict.code
