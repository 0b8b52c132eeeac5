"""A run of the conformance suite, from one frozen configuration: what `harness check` and `harness run` execute.

The checks run in-process through `pytest.main` from the installed package, with the plugin
(`harness.conformance.plugin`) configured by the options built here, so no repository checkout is needed. The run
writes `junit.xml` and `result.json` (validated by `schemas/conformance_result.json`) into its output directory.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from schemas import Profile

RESULT_FILE = "result.json"
JUNIT_FILE = "junit.xml"


@dataclass(frozen=True, slots=True)
class CheckConfig:
    output_dir: Path
    run_id: str
    base_url: str | None = None  # None: the suite starts the simulator itself
    api_key: str | None = None
    api_key_2: str | None = None
    model: str | None = None
    profile: Profile = "anyscale"
    concurrency_limit: int = 30
    chat_template: str | None = None
    extra_headers: tuple[str, ...] = ()  # 'Name: value'
    request_timeout_s: float = 120.0
    release_timeout_s: float = 10.0
    server_args: tuple[str, ...] = ()
    markers: str | None = None
    keyword: str | None = None
    quiet: bool = False


def default_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def pytest_args(config: CheckConfig) -> list[str]:
    """The pytest command line that runs the packaged checks with the plugin and this configuration."""
    from harness.conformance import CHECKS_DIR

    out = config.output_dir
    argv = [str(CHECKS_DIR), "-c", os.devnull, "--rootdir", str(CHECKS_DIR)]  # no ini file found near the checks
    # The checks are synchronous: unrelated plugins stay out of the way.
    argv += ["-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:anyio", "-p", "no:locust"]
    argv += ["--junitxml", str(out / JUNIT_FILE), "-o", "junit_suite_name=conformance"]
    argv += ["--conformance-json", str(out / RESULT_FILE), "--conformance-run-id", config.run_id]
    argv += ["--profile", config.profile, "--concurrency-limit", str(config.concurrency_limit)]
    argv += ["--request-timeout", str(config.request_timeout_s), "--release-timeout", str(config.release_timeout_s)]
    argv.append("-rfE")
    for option, value in (
        ("--base-url", config.base_url),
        ("--api-key", config.api_key),
        ("--api-key-2", config.api_key_2),
        ("--model", config.model),
        ("--chat-template", config.chat_template),
        ("-m", config.markers),
        ("-k", config.keyword),
    ):
        if value is not None:
            argv += [option, value]
    for header in config.extra_headers:
        argv += ["--extra-header", header]
    argv += [f"--server-arg={arg}" for arg in config.server_args]
    argv.append("-q" if config.quiet else "-v")
    return argv


def execute(config: CheckConfig) -> int:
    """Run the suite: 0 when every check passed, 1 when one failed, 2 when no valid result was written."""
    import pytest

    from harness.conformance import plugin
    from harness.conformance.result import features_line, validation_errors

    config.output_dir.mkdir(parents=True, exist_ok=True)
    code = pytest.main(pytest_args(config), plugins=[plugin])
    result_path = config.output_dir / RESULT_FILE
    if not result_path.exists():
        print(f"harness check: no result was written (pytest exit code {int(code)})", file=sys.stderr)
        return int(code) or 2
    result = json.loads(result_path.read_text(encoding="utf-8"))
    problems = validation_errors(result)
    if problems:
        print(f"harness check: {result_path} does not match its schema: {problems[:3]}", file=sys.stderr)
        return 2
    if line := features_line(result):
        print(line)
    print(f"conformance result: {result_path} (JUnit: {config.output_dir / JUNIT_FILE})")
    return 0 if code == pytest.ExitCode.OK else 1
