"""`python -m reference_server --event-loop`: which event loop the server is started on."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop

from reference_server import cli

KEY = "esecret_cli_test_key_0001"


def started_with(monkeypatch: pytest.MonkeyPatch, *flags: str) -> list[object]:
    """The event-loop policies `main` installed before it would have served (it serves nothing here)."""
    policies: list[object] = []
    monkeypatch.setattr(asyncio, "set_event_loop_policy", policies.append)
    monkeypatch.setattr(cli.gc, "freeze", lambda: None)

    def run(main: Coroutine[Any, Any, None]) -> None:
        main.close()

    monkeypatch.setattr(asyncio, "run", run)
    assert cli.main(["--api-key", KEY, "--port", "0", *flags]) == 0
    return policies


def test_uvloop_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    (policy,) = started_with(monkeypatch)
    assert isinstance(policy, uvloop.EventLoopPolicy)


def test_asyncio_keeps_asyncio_s_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    assert started_with(monkeypatch, "--event-loop", "asyncio") == []


def test_an_unknown_event_loop_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--api-key", KEY, "--event-loop", "trio"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--event-loop: invalid choice: 'trio'" in err and "uvloop" in err and "asyncio" in err
