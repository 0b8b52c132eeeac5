"""`harness check`: run the conformance suite shipped in `harness.conformance` against an endpoint.

With no base URL (and no $ANYSCALE_BASE_URL) the suite starts the reference server (simulator) on a free port.
Otherwise the preflight (`harness.target.preflight`) first reaches the endpoint's /models with the key(s) and finds the
model, so that a wrong URL, key or model is one line and exit code 2 rather than every check failing alike; it
sends no completion request, since whether those work is what the checks themselves report.
The checks run in-process from the installed package (`harness.conformance.session`), so no repository checkout is
needed. Writes `junit.xml` and `result.json` (validated by `schemas/conformance_result.json`) into the output
directory and exits 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.conformance.session import CheckConfig, default_run_id, execute
from harness.environment import Environment
from harness.target.launch import DEFAULT_MODEL
from harness.target.preflight import Preflight, PreflightError


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


def config_of(args: argparse.Namespace, env: Environment) -> CheckConfig:
    run_id = args.run_id or default_run_id()
    return CheckConfig(
        output_dir=args.output_dir or Path("reports") / run_id / "conformance",
        run_id=run_id,
        base_url=args.base_url or env.base_url,
        api_key=args.api_key or env.api_key,
        api_key_2=args.api_key_2,
        model=args.model,
        profile=args.profile,
        concurrency_limit=args.concurrency_limit,
        chat_template=args.chat_template,
        extra_headers=tuple(args.extra_header),
        request_timeout_s=args.request_timeout,
        release_timeout_s=args.release_timeout,
        server_args=tuple(args.server_arg),
        markers=args.markers,
        keyword=args.keyword,
        quiet=args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    config = config_of(args, Environment.read())
    if config.base_url and args.preflight:
        try:
            config = replace(config, base_url=_preflight(config))
        except PreflightError as exc:
            print(f"harness check: {exc}", file=sys.stderr)
            return 2
    return execute(config)


def _preflight(config: CheckConfig) -> str:
    """The base URL to check, once its /models answers the key(s) and lists the model; notices are printed."""
    from harness.conformance.contract import parse_header

    if not config.api_key:
        raise PreflightError("an API key is needed with a base URL (--api-key or ANYSCALE_API_KEY)")
    try:
        headers = [parse_header(h) for h in config.extra_headers]
    except ValueError as exc:
        raise PreflightError(f"--extra-header: {exc}") from None
    others = [("--api-key-2", config.api_key_2)] if config.api_key_2 else []
    assert config.base_url is not None
    found = Preflight(config.api_key, headers, other_keys=others).find(config.base_url, config.model or DEFAULT_MODEL)
    for notice in found.notices:
        print(f"notice: {notice}", file=sys.stderr)
    return found.base_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness check", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
