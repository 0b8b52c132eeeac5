"""Every conformance check proven able to fail: for each check, a fault that breaks that check and no other.

Each scenario runs the whole suite (`harness check`) against a fresh simulator: with one fault injected into every
request (`--extra-header 'x-fault: NAME'`), or with a wrong configuration (a limit of 29 or 31, no limit, the other
profile), or with nothing wrong at all (the suite must then pass, under both profiles). The set of checks that fail
must be exactly the scenario's `breaks`. Scenarios run in a few worker processes at once to keep the run short.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from harness.conformance import CHECKS_DIR, matrix
from harness.conformance.features import FEATURES
from harness.conformance.result import validation_errors

REPO = Path(__file__).resolve().parents[2]
WORKERS = 3

# The check each fault breaks alone: the table of the README.
UNIQUE: dict[str, str] = {
    "test_model_list": "unlisted_model",
    "test_model_retrieve": "wrong_model_card",
    "test_response_schema": "no_choice_index",
    "test_response_id": "repeated_id",
    "test_created_is_now": "old_created",
    "test_model_echo": "wrong_model",
    "test_usage_arithmetic": "wrong_usage",
    "test_finish_reason": "length_on_eos",
    "test_max_tokens_one": "ignore_max_tokens",
    "test_stop_string": "ignore_stop",
    "test_ignored_arguments": "strict_args",
    "test_stream_content_type": "wrong_content_type",
    "test_stream_framing": "double_done",
    "test_chunk_schema": "no_chunk_index",
    "test_stream_identity": "changing_created",
    "test_role_first": "missing_role",
    "test_one_finish_reason": "extra_finish",
    "test_stream_usage": "stream_no_usage",
    "test_stream_text": "text_drift",
    "test_sdk_parses": "zero_error",
    "test_chat_matches_templated_completion": "template_completion",
    "test_completion_prompt_verbatim": "bos_if_missing",
    "test_multi_turn_matches_templated_completion": "drop_assistant",
    "test_missing_key": "allow_missing_key",
    "test_wrong_key": "allow_wrong_key",
    "test_unknown_model": "unknown_model_400",
    "test_invalid_request": "status_422",
    "test_limit_rejects_beyond_n": "no_retry_after",
    "test_limit_finished_request_frees_slot": "late_release",
    "test_limit_disconnect_frees_slot": "leak_abandoned",
    "test_limit_is_per_key": "shared_limit",
    "test_limit_rejections_take_no_slot": "reject_leak:40",  # from the 40th refusal in a row (the storm is 60)
    "test_max_completion_tokens": "ignore_max_completion_tokens",
    "test_stop_list": "first_stop_only",
    "test_n_choices": "same_choice_index",
    "test_logprobs": "short_top_logprobs",
    "test_seed_reproducible": "seed_ignored",
    "test_json_mode": "json_trailing_text",
    "test_json_schema": "schema_violation",
    "test_tool_call_named": "tool_args_not_json",
    "test_tool_call_ids": "repeated_tool_id",
    "test_tool_stream": "tool_stream_drift",
    "test_tool_finish_reason": "tool_finish_stop",
    "test_tool_choice_none": "tools_despite_none",
}
LIMITS = frozenset(c for c in UNIQUE if c.startswith("test_limit_"))
PROFILE_SHAPES = frozenset({"test_response_schema", "test_response_id", "test_chunk_schema", "test_stream_usage"})
ERRORS = frozenset({"test_missing_key", "test_wrong_key", "test_unknown_model", "test_invalid_request"})
# The checks of the optional features (n, logprobs, JSON mode and schema, tools): skipped as "not offered" by a
# server that refuses them all with a 400 in the envelope.
OPTIONAL = frozenset(
    {
        "test_n_choices",
        "test_logprobs",
        "test_json_mode",
        "test_json_schema",
        "test_tool_call_named",
        "test_tool_call_ids",
        "test_tool_stream",
        "test_tool_finish_reason",
        "test_tool_choice_none",
    }
)
SIM_COLUMN = "reference server, simulator"


@dataclass(frozen=True)
class Scenario:
    name: str
    breaks: frozenset[str]  # exactly the checks that must fail
    fault: str | None = None
    not_offered: frozenset[str] = frozenset()  # exactly the checks that must be skipped as not offered
    server_profile: str = "anyscale"
    suite_profile: str = "anyscale"
    server_limit: int = 30
    launch: bool = False  # let `harness check` start the simulator itself (no base URL)


SCENARIOS: tuple[Scenario, ...] = (
    # Wrong configurations; the slow ones first, so that the workers finish together.
    Scenario("limit_29", LIMITS, server_limit=29),
    Scenario("limit_31", LIMITS, server_limit=31),
    Scenario("no_limit", LIMITS, server_limit=100_000),
    Scenario("server_openai_suite_anyscale", PROFILE_SHAPES, server_profile="openai"),
    Scenario("server_anyscale_suite_openai", PROFILE_SHAPES, suite_profile="openai"),
    *(Scenario(f"fault_{fault}", frozenset({check}), fault=fault) for check, fault in UNIQUE.items()),
    # Faults that break several checks, each of which has its own fault above.
    Scenario("fault_no_done", frozenset({"test_stream_framing"}), fault="no_done"),
    Scenario("fault_changing_id", frozenset({"test_stream_identity", "test_chunk_schema"}), fault="changing_id"),
    Scenario("fault_wrong_object", frozenset({"test_response_schema", "test_chunk_schema"}), fault="wrong_object"),
    Scenario(
        "fault_not_envelope",
        ERRORS | {"test_limit_rejects_beyond_n", "test_sdk_parses"},
        fault="not_envelope",
    ),
    # Features refused in the envelope: reported not offered, not failed.
    Scenario("fault_reject_features", frozenset(), fault="reject_features", not_offered=OPTIONAL),
    # Nothing wrong: the suite passes, under both profiles, with the server it starts itself or with faults enabled.
    Scenario("pass_anyscale_launched", frozenset(), launch=True),
    Scenario("pass_openai_launched", frozenset(), suite_profile="openai", launch=True),
    Scenario("pass_faults_enabled_openai", frozenset(), server_profile="openai", suite_profile="openai"),
)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANYSCALE_BASE_URL", "ANYSCALE_API_KEY")}
    env["PYTHONPATH"] = str(REPO)
    return env


def _selected(session: pytest.Session) -> set[str]:
    """The scenarios whose tests this session runs (all of them, unless some were deselected)."""
    names = set()
    for item in session.items:
        scenario = getattr(item, "callspec", None) and item.callspec.params.get("scenario")  # type: ignore[attr-defined]
        if isinstance(scenario, Scenario):
            names.add(scenario.name)
    return names


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the selected scenarios, spread over a few worker processes; the outputs are under the returned directory."""
    selected = _selected(request.session)
    root = tmp_path_factory.mktemp("conformance-runs")
    chosen = [s for s in SCENARIOS if s.name in selected]
    specs = [
        {**asdict(s), "breaks": sorted(s.breaks), "not_offered": sorted(s.not_offered), "out": str(root / s.name)}
        for s in chosen
    ]
    workers = []
    for n in range(min(WORKERS, len(specs))):
        spec_file = root / f"worker-{n}.json"
        spec_file.write_text(json.dumps(specs[n::WORKERS]), encoding="utf-8")
        log = (root / f"worker-{n}.log").open("w", encoding="utf-8")
        command = [sys.executable, "-m", "tests.integration.conformance_runs", str(spec_file)]
        workers.append((subprocess.Popen(command, cwd=REPO, env=_clean_env(), stdout=log, stderr=log), log))
    for process, log in workers:
        try:
            process.wait(timeout=900)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    return root


def _log_tail(root: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8")[-3000:] for p in sorted(root.glob("worker-*.log")))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_fails_exactly_its_checks(runs: Path, scenario: Scenario) -> None:
    out = runs / scenario.name
    assert (out / "result.json").exists(), f"the scenario did not run:\n{_log_tail(runs)}"
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert validation_errors(result) == []
    failing = {c["check"] for c in result["checks"] if c["outcome"] in ("failed", "error")}
    details = [f"{c['check']}[{c['case']}]: {c['message']}" for c in result["checks"] if c["outcome"] != "passed"]
    assert failing == scenario.breaks, f"expected to fail: {sorted(scenario.breaks)}; failures: {details}"
    skipped = [c for c in result["checks"] if c["outcome"] == "skipped"]
    assert {c["check"] for c in skipped} == scenario.not_offered, details
    assert all(c["message"].startswith("not offered: ") for c in skipped), details
    statuses = {name: found["status"] for name, found in result["features"].items()}
    assert len(statuses) == len(FEATURES)
    for feature, status in statuses.items():
        checks = {c["check"] for c in result["checks"] if c["feature"] == feature}
        refused = checks & scenario.not_offered
        expected = "failed" if checks & scenario.breaks else "not offered" if refused else "offered"
        assert status == expected, f"{feature}: {status}, expected {expected}"
    assert result["passed"] is (not scenario.breaks)
    assert (out / "exit_code").read_text(encoding="utf-8") == ("1" if scenario.breaks else "0")
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "conformance"
    summary = result["summary"]
    assert int(suite.get("tests", "-1")) == summary["total"] == len(result["checks"]) > 0
    assert int(suite.get("failures", "-1")) + int(suite.get("errors", "-1")) == summary["failed"] + summary["error"]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.name == "pass_anyscale_launched"], ids=lambda s: s.name)
def test_the_readme_matrix_shows_what_the_suite_reported_on_the_simulator(runs: Path, scenario: Scenario) -> None:
    result = json.loads((runs / scenario.name / "result.json").read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert matrix.readme_column(readme, SIM_COLUMN) == matrix.column(result), (
        f"regenerate it: harness check --output-dir out && "
        f"python -m harness.conformance.matrix --readme README.md '{SIM_COLUMN}=out/result.json'"
    )


def test_every_check_has_a_fault_that_breaks_it_alone() -> None:
    """The table is complete: every check of the suite has its fault, and every fault names a real check."""
    checks = re.compile(r"^def (test_\w+)", re.MULTILINE)
    names = {name for module in CHECKS_DIR.glob("test_*.py") for name in checks.findall(module.read_text("utf-8"))}
    assert names == set(UNIQUE)
    assert len(set(UNIQUE.values())) == len(UNIQUE)


def test_harness_check_runs_from_an_installed_package(tmp_path: Path) -> None:
    """Only the packages, as a wheel installs them, and a directory that is not the repository: the checks run."""
    site = tmp_path / "site"
    for package in ("harness", "reference_server", "schemas"):
        shutil.copytree(REPO / package, site / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**_clean_env(), "PYTHONPATH": str(site)}
    command = [sys.executable, "-P", "-m", "harness.commands.check", "-k", "test_model_list or test_stream_framing"]
    done = subprocess.run(
        [*command, "--output-dir", "out"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"rootdir: {site / 'harness' / 'conformance'}" in done.stdout
    result = json.loads((workdir / "out" / "result.json").read_text(encoding="utf-8"))
    assert validation_errors(result) == []
    assert result["target"]["launched"] is True
    assert {c["check"] for c in result["checks"]} == {"test_model_list", "test_stream_framing"}
    assert result["summary"]["passed"] == 3
