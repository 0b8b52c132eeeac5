"""The peers of `harness bench` in the load-generator benchmarks: vllm bench serve, GuideLLM and AIPerf.

Each peer (`benchmarks.support.peers`: how it is installed and invoked) runs in its own process, pinned to a CPU like
ours when asked, and is read back from the per-request results it saves.

How each peer's per-request timings are recovered and matched to the simulator's traces (all three send the
`x-trace-timing` header, so the simulator traces their requests and no request goes untraced):
- vllm bench serve (`--save-detailed`): start time (perf_counter, i.e. CLOCK_MONOTONIC), TTFT and the list of gaps.
  It does not keep response ids; the trace is found by the `x-request-id` it sends (`--request-id-prefix` + index),
  under which the simulator also files the trace. Its chat TTFT ends at the first chunk that has `choices`: the role
  chunk, which the reference server sends before the first token. That TTFT is scored apart (`reported_first_ns`);
  its first-token time is its stamp of the next chunk.
- GuideLLM (JSON output): wall-clock send, first-token and last-token times per request, and the response id. The
  wall clock is mapped to CLOCK_MONOTONIC with the offset read before and after the run. It keeps no per-chunk times.
- AIPerf (`--export-level raw`): the send time and every SSE message's arrival on perf_counter_ns, and the response
  id in the chunks. Its chat parser accepts only `chat.completion.chunk` objects, so it is measured against the
  simulator in the openai profile (the others: anyscale, as before).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.loadgen_common import TOOLS, Load, Measured, Sent, Tool, ToolRun
from benchmarks.support.machine import load_average
from benchmarks.support.peers import AIPERF, GUIDELLM, PEERS, VLLM_BENCH, ToolUnavailable
from harness.target.endpoint import Target
from schemas import Profile

TRACE_HEADER = "x-trace-timing"


@functools.cache
def tokenizer_dir() -> Path:
    """A local Hugging Face tokenizer for the peers' prompt builders (they all want one; the hub is unreachable)."""
    from reference_server.engines.embedded_model import EmbeddedModelError, ensure_embedded_model

    try:
        return ensure_embedded_model()
    except EmbeddedModelError as exc:
        raise ToolUnavailable(f"no local tokenizer for the peers: {exc}") from None


@dataclass(frozen=True, slots=True)
class Drive:
    """What a peer is asked to send: a closed loop of `concurrency` streams, or a Poisson open loop at `rate`."""

    requests: int
    input_tokens: int
    output_tokens: int
    cpu: int | None
    seed: int
    concurrency: int | None = None
    rate: float | None = None

    @classmethod
    def closed(cls, load: Load) -> Drive:
        """A capacity or accuracy run: warm-up requests first, in the same process."""
        return cls(load.warmup + load.requests, load.input_tokens, load.output_tokens, load.cpu, 0, load.concurrency)

    @classmethod
    def poisson(cls, rate: float, requests: int, seed: int) -> Drive:
        """A load-shape run: short requests (16 tokens in, one out), the tool not pinned."""
        return cls(requests, 16, 1, None, seed, rate=rate)


@dataclass(frozen=True, slots=True)
class WallClock:
    """Maps time.time() readings to CLOCK_MONOTONIC: offsets read before and after a run, interpolated."""

    mono0_ns: int
    offset0_ns: int
    mono1_ns: int
    offset1_ns: int

    @staticmethod
    def read() -> tuple[int, int]:
        mono = time.perf_counter_ns()
        return mono, time.time_ns() - mono

    def to_mono_ns(self, wall_s: float) -> int:
        approx = wall_s * 1e9 - self.offset0_ns
        span = max(self.mono1_ns - self.mono0_ns, 1)
        offset = self.offset0_ns + (self.offset1_ns - self.offset0_ns) * (approx - self.mono0_ns) / span
        return round(wall_s * 1e9 - offset)

    @property
    def drift_us(self) -> float:
        return (self.offset1_ns - self.offset0_ns) / 1e3


def _drop_warmup(measured: list[Measured], warmup: int) -> list[Measured]:
    """The first `warmup` requests sent open the connections; like ours, they are not scored."""
    return sorted(measured, key=lambda m: m.sent_ns)[warmup:]


# ---------------------------------------------------------------------------------------------------------------
# vllm bench serve


def _vllm(target: Target, out: Path, drive: Drive) -> tuple[str, dict[str, Any]]:
    prefix = f"vllm-bench-{os.urandom(4).hex()}-"
    args = [
        "--backend", "openai-chat",
        "--base-url", target.root_url,
        "--endpoint", "/v1/chat/completions",
        "--model", target.model,
        "--tokenizer", str(tokenizer_dir()),
        "--dataset-name", "random",
        "--random-input-len", str(drive.input_tokens),
        "--random-output-len", str(drive.output_tokens),
        "--num-prompts", str(drive.requests),
        "--ignore-eos",
        # It asks for `max_completion_tokens`; the lengths are pinned under the older names too, for servers that
        # read only those (the reference server did before issue 17).
        "--extra-body", json.dumps({"max_tokens": drive.output_tokens, "min_tokens": drive.output_tokens}),
        "--header", f"{TRACE_HEADER}=1",
        "--request-id-prefix", prefix,
        "--seed", str(drive.seed),
        "--save-result", "--save-detailed",
        "--result-dir", str(out),
        "--result-filename", "result.json",
        "--disable-tqdm",
    ]  # fmt: skip
    if drive.concurrency is not None:
        args += ["--max-concurrency", str(drive.concurrency), "--request-rate", "inf"]
    else:
        args += ["--request-rate", str(drive.rate), "--burstiness", "1.0"]
    VLLM_BENCH.run(args, out / "vllm.log", cpu=drive.cpu, OPENAI_API_KEY=target.api_key)
    return prefix, json.loads((out / "result.json").read_text())


def _vllm_measured(prefix: str, result: dict[str, Any]) -> list[Measured]:
    rows = zip(result["start_times"], result["ttfts"], result["itls"], result["errors"], strict=True)
    measured = []
    for i, (start_s, ttft_s, gaps_s, error) in enumerate(rows):
        sent = round(start_s * 1e9)
        if error or not ttft_s:
            measured.append(Measured(prefix + str(i), sent, None, [], ok=False))
            continue
        stamps = [start_s + ttft_s]
        for gap in gaps_s:
            stamps.append(stamps[-1] + gap)
        # Its first stamp is the reference server's chat role chunk, which carries no token. (Its token count is no
        # help to tell: it reads `usage` only from chunks without `choices`, and otherwise re-tokenizes the text.)
        reported, *chunks = [round(s * 1e9) for s in stamps]
        if not chunks:
            measured.append(Measured(prefix + str(i), sent, None, [], ok=False))
            continue
        measured.append(Measured(prefix + str(i), sent, chunks[0], chunks, reported_first_ns=reported))
    return measured


def run_vllm_bench(target: Target, load: Load) -> ToolRun:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        prefix, result = _vllm(target, Path(tmp), Drive.closed(load))
        wall = time.perf_counter() - started
    return ToolRun(VLLM_BENCH.label, _drop_warmup(_vllm_measured(prefix, result), load.warmup), wall)


def shape_vllm_bench(target: Target, rate: float, requests: int, seed: int) -> Sent:
    with tempfile.TemporaryDirectory() as tmp:
        prefix, result = _vllm(target, Path(tmp), Drive.poisson(rate, requests, seed))
    measured = sorted(_vllm_measured(prefix, result), key=lambda m: m.sent_ns)
    return Sent(VLLM_BENCH.label, [m.sent_ns for m in measured], None, [m.request_id or "" for m in measured])


# ---------------------------------------------------------------------------------------------------------------
# GuideLLM


def _guidellm(
    target: Target,
    out: Path,
    profile: dict[str, Any],
    levels: list[dict[str, Any]],
    *,
    input_tokens: int,
    output_tokens: int,
    cpu: int | None,
    seed: int,
) -> tuple[list[dict[str, Any]], WallClock]:
    result = out / "benchmarks.json"
    scenario = {
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": target.root_url,
                "model": target.model,
                "api_key": target.api_key,
                "request_format": "/v1/chat/completions",
                # It asks for `max_completion_tokens`; the lengths are pinned under the older names too, for
                # servers that read only those (the reference server did before issue 17).
                "extras": {
                    "headers": {TRACE_HEADER: "1"},
                    "body": {"max_tokens": output_tokens, "min_tokens": output_tokens},
                },
            },
            "profile": profile,
            "data": [{"kind": "synthetic_text", "prompt_tokens": input_tokens, "output_tokens": output_tokens}],
            "tokenizer": {"kind": "huggingface_auto", "model": str(tokenizer_dir())},
            "constraints": [{"kind": "max_requests", "count": 1}],
            "seed": {"kind": "static", "value": seed},
            "outputs": [{"kind": "json", "path": str(result)}],
        },
        "benchmarks": levels,
    }
    (out / "scenario.json").write_text(json.dumps(scenario))
    before = WallClock.read()
    GUIDELLM.run(["run", "-c", str(out / "scenario.json"), "--disable-progress"], out / "guidellm.log", cpu=cpu)
    clock = WallClock(*before, *WallClock.read())
    return json.loads(result.read_text())["benchmarks"], clock


def guidellm_measured(benchmark: dict[str, Any], clock: WallClock) -> tuple[list[Measured], list[int | None]]:
    """Per request: what GuideLLM measured, and the schedule it drew (`targeted_start`; None where it has none)."""
    measured: list[Measured] = []
    scheduled: list[int | None] = []
    groups = benchmark["requests"]
    for status in ("successful", "errored", "incomplete"):
        for request in groups.get(status) or []:
            timings = request["info"]["timings"]
            sent = clock.to_mono_ns(timings["request_start"] or timings["resolve_start"])
            # GuideLLM 0.8.1 left `targeted_start` at 0 (or, once, at a time outside the run) for a few requests of
            # a 5000-request Poisson run: those have no schedule.
            target = timings.get("targeted_start")
            due = clock.to_mono_ns(target) if target else None
            scheduled.append(due if due is not None and clock.mono0_ns <= due <= clock.mono1_ns else None)
            first, last = timings.get("first_token_iteration"), timings.get("last_token_iteration")
            if status != "successful" or first is None or last is None:
                measured.append(Measured(request.get("response_id"), sent, None, [], ok=False))
                continue
            first_ns, last_ns = clock.to_mono_ns(first), clock.to_mono_ns(last)
            tokens = int(timings["token_iterations"])
            measured.append(
                Measured(request.get("response_id"), sent, first_ns, [first_ns, last_ns], token_chunks=tokens)
            )
    return measured, scheduled


def levels_guidellm(target: Target, loads: Sequence[Load]) -> list[ToolRun]:
    """All concurrency levels in one GuideLLM process (its start-up takes tens of seconds), one benchmark each."""
    first = loads[0]
    levels = [
        {"profile.streams": load.concurrency, "constraints[0].count": load.warmup + load.requests} for load in loads
    ]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        benchmarks, clock = _guidellm(
            target,
            Path(tmp),
            {"kind": "concurrent", "streams": first.concurrency},
            levels,
            input_tokens=first.input_tokens,
            output_tokens=first.output_tokens,
            cpu=first.cpu,
            seed=0,
        )
        wall = time.perf_counter() - started
    runs = []
    for load, benchmark in zip(loads, benchmarks, strict=True):
        measured, _ = guidellm_measured(benchmark, clock)
        runs.append(
            ToolRun(GUIDELLM.label, _drop_warmup(measured, load.warmup), wall, f"clock drift {clock.drift_us:.0f} µs")
        )
    return runs


def run_guidellm(target: Target, load: Load) -> ToolRun:
    return levels_guidellm(target, [load])[0]


def shape_guidellm(target: Target, rate: float, requests: int, seed: int) -> Sent:
    with tempfile.TemporaryDirectory() as tmp:
        benchmarks, clock = _guidellm(
            target,
            Path(tmp),
            {"kind": "poisson", "rate": rate},
            [{"constraints[0].count": requests}],
            input_tokens=16,
            output_tokens=1,
            cpu=None,
            seed=seed,
        )
    measured, scheduled = guidellm_measured(benchmarks[0], clock)
    order = sorted(range(len(measured)), key=lambda i: (scheduled[i] or measured[i].sent_ns, measured[i].sent_ns))
    return Sent(
        GUIDELLM.label,
        [measured[i].sent_ns for i in order],
        [scheduled[i] for i in order],
        [measured[i].request_id or "" for i in order],
    )


# ---------------------------------------------------------------------------------------------------------------
# AIPerf


def _aiperf(target: Target, out: Path, drive: Drive) -> list[Measured]:
    args = [
        "profile",
        "--model", target.model,
        "--url", target.root_url,
        "--endpoint-type", "chat",
        "--streaming",
        "--api-key", target.api_key,
        "--tokenizer", str(tokenizer_dir()),
        "--isl", str(drive.input_tokens),
        "--osl", str(drive.output_tokens),
        "--use-legacy-max-tokens",  # the reference server reads `max_tokens`
        "--extra-inputs", f"min_tokens:{drive.output_tokens}",
        "--extra-inputs", "ignore_eos:true",
        # The simulator only looks for the header; a digit as its value would be parsed as a number and refused.
        "--header", f"{TRACE_HEADER}:requested",
        "--request-count", str(drive.requests),
        "--random-seed", str(drive.seed),
        "--export-level", "raw",
        "--ui", "none",
        "--no-server-metrics",
        "--no-gpu-telemetry",
        "--artifact-dir", str(out / "artifacts"),
    ]  # fmt: skip
    if drive.concurrency is not None:
        args += ["--concurrency", str(drive.concurrency)]
    else:
        args += ["--request-rate", str(drive.rate), "--arrival-pattern", "poisson"]
    AIPERF.run(args, out / "aiperf.log", cpu=drive.cpu)
    measured = []
    for line in (out / "artifacts" / "profile_export_raw.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("metadata", {}).get("benchmark_phase", "profiling") != "profiling":
            continue
        ident, stamps = None, []
        for response in record.get("responses") or []:
            for packet in response.get("packets") or []:
                if packet.get("name") != "data" or packet.get("value") in (None, "[DONE]"):
                    continue
                chunk = json.loads(packet["value"])
                ident = ident or chunk.get("id")
                choices = chunk.get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    stamps.append(int(response["perf_ns"]))
                    break
        ok = record.get("status") == 200 and not record.get("error") and bool(stamps)
        sent = int(record["start_perf_ns"])
        measured.append(Measured(ident, sent, stamps[0] if ok else None, stamps if ok else [], ok=ok))
    return measured


def run_aiperf(target: Target, load: Load) -> ToolRun:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        measured = _aiperf(target, Path(tmp), Drive.closed(load))
        wall = time.perf_counter() - started
    return ToolRun(AIPERF.label, _drop_warmup(measured, load.warmup), wall)


def shape_aiperf(target: Target, rate: float, requests: int, seed: int) -> Sent:
    with tempfile.TemporaryDirectory() as tmp:
        measured = _aiperf(target, Path(tmp), Drive.poisson(rate, requests, seed))
    measured.sort(key=lambda m: m.sent_ns)
    return Sent(AIPERF.label, [m.sent_ns for m in measured], None, [m.request_id or "" for m in measured])


# ---------------------------------------------------------------------------------------------------------------
# Registries

PEER_TOOLS: dict[str, Tool] = {VLLM_BENCH.name: run_vllm_bench, GUIDELLM.name: run_guidellm, AIPERF.name: run_aiperf}
ALL_TOOLS: dict[str, Tool] = {**TOOLS, **PEER_TOOLS}
PEER_SHAPE_TOOLS = {VLLM_BENCH.name: shape_vllm_bench, GUIDELLM.name: shape_guidellm, AIPERF.name: shape_aiperf}
LEVEL_TOOLS = {GUIDELLM.name: levels_guidellm}  # tools that run every level of a sweep in one process


def profile_of(name: str) -> Profile:
    """The simulator's profile for a tool: the peer's (`benchmarks.support.peers`), anyscale for ours."""
    return PEERS[name].profile if name in PEERS else "anyscale"


def run_levels(name: str, target: Target, loads: Sequence[Load]) -> list[ToolRun]:
    """One run per load, in one process for the tools that can (their load average is then the whole run's)."""
    if name in LEVEL_TOOLS:
        runs = LEVEL_TOOLS[name](target, loads)
        for run in runs:
            run.load_avg = load_average()
        return runs
    runs = []
    for load in loads:
        runs.append(ALL_TOOLS[name](target, load))
        runs[-1].load_avg = load_average()
    return runs
