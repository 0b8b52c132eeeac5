"""The peer tools the benchmarks measure beside ours, in one registry: what each is called, how it is installed and
how it is invoked.

Each runs through its own command line, in its own process; nothing of theirs is imported here. vllm bench serve
comes with the vLLM package of the project's environment; GuideLLM and AIPerf are installed on first use into their
own virtual environments under `benchmarks/.venvs/` (gitignored), never into the project's.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.support import ROOT
from benchmarks.support.processes import pinned, tail
from schemas import Profile

VENVS = ROOT / "benchmarks" / ".venvs"
# No network here: without this, the Hugging Face libraries inside vLLM and GuideLLM retry the hub before using the
# local tokenizer folder. (AIPerf refuses a local folder in offline mode: it asks the hub what the path is.)
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class ToolUnavailable(RuntimeError):
    """A peer could not be installed or run here; the benchmark reports why and goes on with the others."""


@dataclass(frozen=True, slots=True)
class Peer:
    """One peer tool.

    `package` is the pip requirement installed into `benchmarks/.venvs/NAME`, and `invoke[0]` then names the console
    script of that environment; a peer without a package comes with the project's environment (`module` says which
    module it needs), and `invoke` is its whole command.
    """

    name: str  # as the benchmarks' `--tools` and `--servers` options name it
    label: str  # as the tables name it
    invoke: tuple[str, ...]
    package: str | None = None
    module: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # set for every run, over this process's environment
    profile: Profile = "anyscale"  # the simulator's profile whose chunks it can read

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    def command(self) -> list[str]:
        """The peer's command, installed first when it lives in a virtual environment of its own and is missing."""
        if self.package is None:
            if self.module is not None and importlib.util.find_spec(self.module) is None:
                raise ToolUnavailable(
                    f"{self.module} is not installed in the project's environment (scripts/install.sh installs it)"
                )
            return list(self.invoke)
        return [str(self._install()), *self.invoke[1:]]

    def environment(self, **more: str) -> dict[str, str]:
        return {**os.environ, **self.env, **more}

    def run(self, args: Sequence[str], log: Path, *, cpu: int | None = None, **env: str) -> None:
        """The peer with `args`, to its end, pinned to `cpu` when given, its output to `log`, `env` over its own."""
        argv = pinned([*self.command(), *args], cpu)
        with log.open("wb") as sink:
            done = subprocess.run(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=self.environment(**env))
        if done.returncode != 0:
            raise ToolUnavailable(f"{self.label} exited with {done.returncode}:\n{tail(log.read_bytes())}")

    def _install(self) -> Path:
        """The peer's executable in its virtual environment, created with `pip install PACKAGE` when missing."""
        assert self.package is not None
        path = self.venv / "bin" / self.invoke[0]
        if path.exists():
            return path
        print(f"installing {self.package} into {self.venv.relative_to(ROOT)} (once) ...", file=sys.stderr, flush=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        try:
            if not (self.venv / "bin" / "python").exists():
                subprocess.run([base, "-m", "venv", str(self.venv)], check=True, capture_output=True, timeout=300)
            subprocess.run(
                [str(self.venv / "bin" / "python"), "-m", "pip", "install", "-q", self.package],
                check=True,
                capture_output=True,
                timeout=1800,
            )
        except subprocess.CalledProcessError as exc:
            raise ToolUnavailable(f"`pip install {self.package}` failed:\n{tail(exc.stderr)}") from None
        except subprocess.TimeoutExpired:
            raise ToolUnavailable(f"`pip install {self.package}` did not finish within its time limit") from None
        if not path.exists():
            raise ToolUnavailable(f"{self.package} installed but {path} is missing")
        return path


VLLM_BENCH = Peer(
    "vllm",
    "vllm bench serve",
    (
        sys.executable,
        "-c",
        "import argparse, sys; from vllm.benchmarks.serve import add_cli_args, main; "
        "p = argparse.ArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))",
    ),
    module="vllm",
    env=OFFLINE,
)
GUIDELLM = Peer("guidellm", "GuideLLM", ("guidellm",), package="guidellm", env=OFFLINE)
# Its chat parser accepts only `chat.completion.chunk` objects: it reads the openai profile only.
AIPERF = Peer("aiperf", "AIPerf", ("aiperf",), package="aiperf", profile="openai")
PEERS: dict[str, Peer] = {peer.name: peer for peer in (VLLM_BENCH, GUIDELLM, AIPERF)}
