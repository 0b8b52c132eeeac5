"""`harness check`: run the conformance suite shipped in `harness.conformance` against an endpoint.

With no base URL (and no $ANYSCALE_BASE_URL) the suite starts the reference server (simulator) on a free port.
Otherwise the preflight (`harness.target.preflight`) first reaches the endpoint's /models with the key(s) and finds the
model, so that a wrong URL, key or model is one line and exit code 2 rather than every check failing alike; it
sends no completion request, since whether those work is what the checks themselves report.
The checks run in-process through `pytest.main` from the installed package, so no repository checkout is needed.
Writes `junit.xml` and `result.json` (validated by `schemas/conformance_result.json`) into the output directory and
exits 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from harness.target.launch import DEFAULT_MODEL
from harness.target.preflight import Preflight, PreflightError

RESULT_FILE = "result.json"
JUNIT_FILE = "junit.xml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument("--base-url", help="endpoint ending in /v1 (default $ANYSCALE_BASE_URL; none: the simulator)")
    target.add_argument("--api-key", help="API key (default $ANYSCALE_API_KEY)")
    target.add_argument("--api-key-2", help="a second key, to check that the limit is per key")
    target.add_argument("--model", help="model under test (default meta-llama/Meta-Llama-3-8B-Instruct)")
    target.add_argument("--profile", choices=["anyscale", "openai"], default="anyscale")
    target.add_argument("--concurrency-limit", type=int, default=30, help="requests in flight per key (default 30)")
    target.add_argument("--chat-template", help="llama3, llama2, mistral, chatml or a Jinja file (default: by model)")
    target.add_argument(
        "--extra-header", action="append", default=[], metavar="'NAME: VALUE'", help="sent with every request"
    )
    target.add_argument("--request-timeout", type=float, default=120.0, help="seconds to wait for any read")
    target.add_argument(
        "--release-timeout", type=float, default=10.0, help="seconds a slot may take to come back (limit checks)"
    )
    target.add_argument("--server-arg", action="append", default=[], help="extra argument for the started simulator")
    target.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        help="skip the check of the endpoint's /models, key and model before the suite",
    )
    run = parser.add_argument_group("run")
    run.add_argument("-m", "--markers", help="run a part: a marker expression, e.g. 'streaming or errors'")
    run.add_argument("-k", "--keyword", help="run checks whose names match this pytest -k expression")
    run.add_argument("--run-id", help="the run's id (default: a new one)")
    run.add_argument("--output-dir", type=Path, help="where to write junit.xml and result.json")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the summary")


def default_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def pytest_args(args: argparse.Namespace, output_dir: Path, run_id: str) -> list[str]:
    """The pytest command line that runs the packaged checks with the plugin and these options."""
    from harness.conformance import CHECKS_DIR

    argv = [
        str(CHECKS_DIR),
        "-c",
        os.devnull,  # the checks are configured by the plugin, never by an ini file found near them
        "--rootdir",
        str(CHECKS_DIR),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:asyncio",  # the checks are synchronous; unrelated plugins stay out of the way
        "-p",
        "no:anyio",
        "-p",
        "no:locust",
        "--junitxml",
        str(output_dir / JUNIT_FILE),
        "-o",
        "junit_suite_name=conformance",
        "--conformance-json",
        str(output_dir / RESULT_FILE),
        "--conformance-run-id",
        run_id,
        "--profile",
        args.profile,
        "--concurrency-limit",
        str(args.concurrency_limit),
        "--request-timeout",
        str(args.request_timeout),
        "--release-timeout",
        str(args.release_timeout),
        "-rfE",
    ]
    for name in ("base_url", "api_key", "api_key_2", "model", "chat_template"):
        if (value := getattr(args, name)) is not None:
            argv += [f"--{name.replace('_', '-')}", value]
    for header in args.extra_header:
        argv += ["--extra-header", header]
    for server_arg in args.server_arg:
        argv.append(f"--server-arg={server_arg}")
    if args.markers:
        argv += ["-m", args.markers]
    if args.keyword:
        argv += ["-k", args.keyword]
    argv.append("-q" if args.quiet else "-v")
    return argv


def run(args: argparse.Namespace) -> int:
    import pytest

    from harness.conformance import plugin
    from harness.conformance.result import features_line, validation_errors

    base_url = args.base_url or os.environ.get("ANYSCALE_BASE_URL")
    if base_url and args.preflight:
        try:
            args = argparse.Namespace(**{**vars(args), "base_url": _preflight(args, base_url)})
        except PreflightError as exc:
            print(f"harness check: {exc}", file=sys.stderr)
            return 2
    run_id = args.run_id or default_run_id()
    output_dir: Path = args.output_dir or Path("reports") / run_id / "conformance"
    output_dir.mkdir(parents=True, exist_ok=True)
    code = pytest.main(pytest_args(args, output_dir, run_id), plugins=[plugin])
    result_path = output_dir / RESULT_FILE
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
    print(f"conformance result: {result_path} (JUnit: {output_dir / JUNIT_FILE})")
    return 0 if code == pytest.ExitCode.OK else 1


def _preflight(args: argparse.Namespace, base_url: str) -> str:
    """The base URL to check, once its /models answers the key(s) and lists the model; notices are printed."""
    from harness.conformance.contract import parse_header

    key = args.api_key or os.environ.get("ANYSCALE_API_KEY")
    if not key:
        raise PreflightError("an API key is needed with a base URL (--api-key or ANYSCALE_API_KEY)")
    try:
        headers = [parse_header(h) for h in args.extra_header]
    except ValueError as exc:
        raise PreflightError(f"--extra-header: {exc}") from None
    others = [("--api-key-2", args.api_key_2)] if args.api_key_2 else []
    found = Preflight(key, headers, other_keys=others).find(base_url, args.model or DEFAULT_MODEL)
    for notice in found.notices:
        print(f"notice: {notice}", file=sys.stderr)
    return found.base_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness check", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
