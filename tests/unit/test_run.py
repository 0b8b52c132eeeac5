"""`harness run` before it starts anything: the messages that send a user the right way."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.cli import main


def test_without_vllm_it_names_the_install_command_and_the_simulator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert main(["run", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "./scripts/main.sh" in err and "pip install -e '.[cpu]'" in err and "harness run --engine sim" in err


def test_an_endpoint_needs_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("ANYSCALE_API_KEY", raising=False)
    assert main(["run", "--base-url", "http://127.0.0.1:9/v1", "--output-dir", str(tmp_path)]) == 2
    assert "an API key is needed" in capsys.readouterr().err


def test_a_sweep_needs_user_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--sweep", "0,8"])
    assert "user counts of at least 1" in capsys.readouterr().err
