"""The pytest plugin of the conformance suite: options, markers, the target, the report header and the JSON result.

Load it with `-p harness.conformance.plugin` (as `harness check` does) or from a conftest (as `tests/conformance`
does). With no base URL the suite starts the reference server (simulator) on a free port and stops it at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.conformance.contract import FEATURE_MARKER, MARKERS
from harness.conformance.fixtures import (
    api,
    contract,
    exchanges,
    features,
    kind,
    reply,
    sdk,
    settings,
    streamed,
    target,
)
from harness.conformance.launch import SETTINGS, prepare
from harness.conformance.result import ResultCollector, write
from harness.environment import Environment
from harness.target.launch import DEFAULT_MODEL

__all__ = [
    "api",
    "contract",
    "exchanges",
    "features",
    "kind",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_report_header",
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "reply",
    "sdk",
    "settings",
    "streamed",
    "target",
]

_COLLECTOR = pytest.StashKey[ResultCollector]()
_NEEDS_SECOND_KEY = {"test_limit_is_per_key"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "conformance suite (harness.conformance)")
    group.addoption("--base-url", help="endpoint ending in /v1 (default $ANYSCALE_BASE_URL; none: start the simulator)")
    group.addoption("--api-key", help="API key (default $ANYSCALE_API_KEY)")
    group.addoption("--api-key-2", help="a second key, to check that the limit is per key")
    group.addoption("--model", help=f"model under test (default {DEFAULT_MODEL})")
    group.addoption("--profile", choices=["anyscale", "openai"], default="anyscale", help="shapes to expect")
    group.addoption("--concurrency-limit", type=int, default=30, help="requests in flight per key (default 30)")
    group.addoption("--chat-template", help="llama3, llama2, mistral, chatml or a Jinja file (default: by model)")
    group.addoption(
        "--extra-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header sent with every request (repeatable)",
    )
    group.addoption("--request-timeout", type=float, default=120.0, help="seconds to wait for any read")
    group.addoption(
        "--release-timeout",
        type=float,
        default=10.0,
        help="seconds a slot may take to come back after a request ends (limit checks)",
    )
    group.addoption("--server-arg", action="append", default=[], help="extra argument for the started simulator")
    group.addoption("--conformance-json", type=Path, help="write the JSON result here")
    group.addoption("--conformance-run-id", help="run id recorded in the JSON result")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.addinivalue_line("markers", f"{FEATURE_MARKER}(name): the check belongs to the chat-surface feature name")
    collector = ResultCollector()
    config.stash[_COLLECTOR] = collector
    config.pluginmanager.register(collector, "conformance-result")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    prepare(session.config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if SETTINGS not in config.stash:
        return ["conformance target: not started yet"]
    s = config.stash[SETTINGS]
    t = s.target
    second = "a second key" if t.api_key_2 else "no second key"
    lines = [
        f"conformance target: {t.base_url} — {t.description}",
        f"  model {t.model}, profile {t.profile}, limit {t.concurrency_limit} per key, {second}",
    ]
    if s.extra_headers:
        lines.append(f"  extra headers: {', '.join(f'{n}: {v}' for n, v in s.extra_headers)}")
    return lines


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a second key the per-key check cannot run: it is left out and reported as not run."""
    launching = not (config.getoption("base_url") or Environment.read().base_url)
    if launching or config.getoption("api_key_2"):
        return  # the started simulator has two keys
    left_out = [
        i
        for i in items
        if getattr(i, "originalname", i.name) in _NEEDS_SECOND_KEY
        and getattr(getattr(i, "function", None), "__module__", "").startswith(__package__ or "harness.conformance")
    ]
    if left_out:
        for item in left_out:
            config.stash[_COLLECTOR].record_not_run(item, "needs a second key (--api-key-2)")
        items[:] = [i for i in items if i not in left_out]
        config.hook.pytest_deselected(items=left_out)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    path = config.getoption("conformance_json")
    if path is not None and _COLLECTOR in config.stash:
        result = config.stash[_COLLECTOR].result(
            config.stash.get(SETTINGS, None), config.getoption("conformance_run_id")
        )
        write(path, result)
