"""The conformance session's settings: the endpoint given (options, or the environment's fallbacks), or the reference
server's simulator started for the session and stopped at its end. Kept in the pytest config's stash, once.
"""

from __future__ import annotations

import contextlib

import pytest

from harness.conformance.contract import Settings, parse_header
from harness.environment import Environment
from harness.target.endpoint import Target
from harness.target.launch import DEFAULT_MODEL, launch_reference_server

SETTINGS = pytest.StashKey[Settings]()


# A fast simulator: the suite checks the contract, not the latency.
FAST_SIM = ("--ttft-ms", "5", "--itl-ms", "2", "--itl-batch-factor", "1", "--prefill-ms-per-token", "0")


def prepare(config: pytest.Config) -> Settings:
    """The settings of this session, starting the simulator the first time when no base URL was given."""
    if SETTINGS in config.stash:
        return config.stash[SETTINGS]
    opt = config.getoption
    env = Environment.read()
    base_url = opt("base_url") or env.base_url
    try:
        headers = tuple(parse_header(h) for h in opt("extra_header"))
    except ValueError as exc:
        raise pytest.UsageError(f"--extra-header: {exc}") from None
    if base_url:
        key = opt("api_key") or env.api_key
        if not key:
            raise pytest.UsageError("--api-key (or $ANYSCALE_API_KEY) is required with a base URL")
        target = Target.of(
            base_url,
            [key, *([second] if (second := opt("api_key_2")) else [])],
            opt("model") or DEFAULT_MODEL,
            "the endpoint given by --base-url or $ANYSCALE_BASE_URL",
            profile=opt("profile"),
            concurrency_limit=opt("concurrency_limit"),
        )
    else:
        stack = contextlib.ExitStack()
        config.add_cleanup(stack.close)
        launched = stack.enter_context(
            launch_reference_server(
                profile=opt("profile"),
                concurrency_limit=opt("concurrency_limit"),
                model=opt("model"),
                extra_args=[*FAST_SIM, *opt("server_arg")],
                startup_timeout_s=120,
            )
        )
        target = launched.target
    settings = Settings(
        target=target,
        extra_headers=headers,
        chat_template=opt("chat_template"),
        request_timeout_s=opt("request_timeout"),
        release_timeout_s=opt("release_timeout"),
        launched=not base_url,
    )
    config.stash[SETTINGS] = settings
    return settings
