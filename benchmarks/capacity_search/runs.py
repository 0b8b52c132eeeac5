"""The runs: `harness bench` as a subprocess, against a reference server started for it (the simulator with the
model's latencies, or the vLLM engine with the embedded model), its summary read back."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.capacity_search.model import SimModel
from benchmarks.support import ROOT
from benchmarks.support.harness_cli import bench_argv
from harness.target.launch import LaunchedServer, launch_reference_server

# The vLLM engine as `harness run` starts it (README: the reference server on vLLM).
VLLM_ARGS = ("--max-model-len", "2048", "--enforce-eager")
LIMIT = 100_000  # no per-key limit: a queue past the capacity must grow in the server, not turn into 429s


@dataclass(frozen=True, slots=True)
class Searched:
    """A search's outcome, as its summary gives it, and how long the command took."""

    slo: str
    summary: dict[str, Any]
    wall_s: float

    @property
    def capacity(self) -> dict[str, Any]:
        found: dict[str, Any] = self.summary["capacity"]
        return found

    @property
    def answer(self) -> float | None:
        value = self.capacity["answer"]
        return None if value is None else float(value)

    @property
    def trials(self) -> int:
        return len(self.capacity["trials"])

    @property
    def used(self) -> int:
        return sum(1 for t in self.capacity["trials"] if t["used"])


@dataclass(frozen=True, slots=True)
class Stepped:
    """One step of a saturation run: flagged SATURATED or not, and when the live test stopped it (s from its start)."""

    rate: float
    saturated: bool
    stopped_at_s: float | None


@contextlib.contextmanager
def simulator(model: SimModel) -> Iterator[LaunchedServer]:
    with launch_reference_server(concurrency_limit=LIMIT, extra_args=model.sim_args()) as server:
        yield server


def bench(server: LaunchedServer, out: Path, run_id: str, options: Sequence[str]) -> tuple[dict[str, Any], float]:
    """`harness bench` with `options` against the server; its summary and the command's wall time. Its output (the
    trials as they are judged) goes to ours."""
    started = time.monotonic()
    argv = bench_argv(server.target, out, run_id, *options)
    code = subprocess.run(argv, cwd=ROOT, check=False).returncode
    if code == 2:
        raise RuntimeError(f"harness bench could not run ({' '.join(argv)})")
    summary: dict[str, Any] = orjson.loads((out / run_id / "summary.json").read_bytes())
    return summary, time.monotonic() - started


def search(server: LaunchedServer, out: Path, run_id: str, slo: str, start: float, load: Sequence[str]) -> Searched:
    """A rate search for `slo` from `start` req/s, saturated trials stopped (the project's defaults otherwise)."""
    options = ["--find-max-rate", "--rate", f"{start:g}", "--slo", slo, "--stop-when-saturated", *load]
    summary, wall_s = bench(server, out, run_id, options)
    return Searched(slo, summary, wall_s)


def saturation(
    server: LaunchedServer, out: Path, run_id: str, rate: float, runs: int, duration_s: float, model: SimModel
) -> list[Stepped]:
    """`runs` seeded Poisson steps at `rate`, each `duration_s` long unless the live test stops it."""
    prompt, output = model.prompt_tokens, model.output_tokens
    options = ["--sweep-rate", ",".join([f"{rate:.4g}"] * runs), "--duration", f"{duration_s:g}",
               "--stop-when-saturated", "--input-tokens", str(prompt), "--output-tokens", str(output)]  # fmt: skip
    summary, _ = bench(server, out, run_id, options)
    return [Stepped(float(s["rate"]), bool(s["saturation"]["saturated"]), s["saturation"]["stopped_at_s"])
            for s in summary["steps"]]  # fmt: skip


@contextlib.contextmanager
def vllm(log: Path) -> Iterator[LaunchedServer]:
    """The reference server on the vLLM engine with the embedded model (loading it takes a minute or two)."""
    with launch_reference_server(engine="vllm", concurrency_limit=LIMIT, extra_args=VLLM_ARGS, startup_timeout_s=1200,
                                 log_path=log) as server:  # fmt: skip
        yield server
