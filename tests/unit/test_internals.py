"""The private names the timing depends on, in aiohttp and in geventhttpclient/Locust: all there, and an upgrade
that took one away would be named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.client import internals

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_every_aiohttp_attribute_the_client_reads_is_there() -> None:
    assert internals.missing() == []


def test_an_aiohttp_without_one_of_them_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = (*internals.ATTRIBUTES, ("ResponseHandler", "_timing_hook_gone", "a name no aiohttp has"))
    monkeypatch.setattr(internals, "ATTRIBUTES", gone)
    assert internals.missing() == ["ResponseHandler._timing_hook_gone"]


def scenarios_missing(extra: str = "") -> list[str]:
    """`_llm_http.missing()` in a process of its own: importing Locust monkey-patches the whole process with gevent,
    which this one (asyncio tests) must not be."""
    code = f"import json, locust, _llm_http\n{extra}\nprint(json.dumps(_llm_http.missing()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=SCENARIOS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found: list[str] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_every_geventhttpclient_and_locust_attribute_the_scenarios_read_is_there() -> None:
    assert scenarios_missing() == []


def test_a_geventhttpclient_without_one_of_them_is_named() -> None:
    gone = '_llm_http.ATTRIBUTES += (("HTTPSocketResponse", "_sock_gone", "a name no release has"),)'
    assert scenarios_missing(gone) == ["HTTPSocketResponse._sock_gone"]
