"""The one registry of peer tools (`benchmarks.support.peers`): what each is, how it is installed and invoked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import loadgen_peers
from benchmarks.support import peers
from benchmarks.support.peers import OFFLINE, PEERS, Peer, ToolUnavailable

# A stand-in peer: prints an environment variable and exits with the code it is given.
ECHO = (sys.executable, "-c", "import os, sys; print(os.environ['PEER_SAYS']); sys.exit(int(sys.argv[1]))")


def test_the_registry_holds_the_three_peers_under_their_names() -> None:
    assert {name: (p.name, p.label) for name, p in PEERS.items()} == {
        "vllm": ("vllm", "vllm bench serve"),
        "guidellm": ("guidellm", "GuideLLM"),
        "aiperf": ("aiperf", "AIPerf"),
    }
    assert PEERS["vllm"].package is None and PEERS["vllm"].module == "vllm"  # from the project's environment
    assert (PEERS["guidellm"].package, PEERS["aiperf"].package) == ("guidellm", "aiperf")
    assert PEERS["guidellm"].venv == peers.VENVS / "guidellm"
    assert PEERS["guidellm"].env == OFFLINE and PEERS["vllm"].env == OFFLINE
    assert PEERS["aiperf"].env == {}  # it refuses a local tokenizer folder in offline mode


def test_the_simulator_profile_per_tool() -> None:
    assert [loadgen_peers.profile_of(n) for n in ("aiperf", "guidellm", "vllm", "harness", "naive")] == [
        "openai",
        "anyscale",
        "anyscale",
        "anyscale",
        "anyscale",
    ]
    assert set(loadgen_peers.PEER_TOOLS) == set(loadgen_peers.PEER_SHAPE_TOOLS) == set(PEERS)


def test_an_installed_peer_runs_from_its_own_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "VENVS", tmp_path)
    exe = tmp_path / "tool" / "bin" / "tool"
    exe.parent.mkdir(parents=True)
    exe.touch()
    peer = Peer("tool", "Tool", ("tool", "serve"), package="tool")
    assert peer.venv == tmp_path / "tool"
    assert peer.command() == [str(exe), "serve"]  # found, so nothing is installed


def test_a_peer_of_the_project_needs_its_module() -> None:
    assert Peer("py", "Python", ("python3",), module="json").command() == ["python3"]
    with pytest.raises(ToolUnavailable, match="no_such_module_here is not installed in the project's environment"):
        Peer("x", "X", ("x",), module="no_such_module_here").command()


def test_a_run_gets_the_peers_environment_and_a_failure_is_reported(tmp_path: Path) -> None:
    peer = Peer("echo", "the echo peer", ECHO, env={"PEER_SAYS": "its own"})
    assert peer.environment(MORE="1")["PEER_SAYS"] == "its own"
    log = tmp_path / "echo.log"
    peer.run(["0"], log)
    assert log.read_text() == "its own\n"
    peer.run(["0"], log, PEER_SAYS="given")
    assert log.read_text() == "given\n"
    with pytest.raises(ToolUnavailable, match="the echo peer exited with 3:\nits own"):
        peer.run(["3"], log)
