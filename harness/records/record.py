"""One record per request, and the JSONL file that holds a run.

A run file starts with one `run` line (the run's wall-clock start and the monotonic origin, stored once), then
holds `request` lines as requests finish and a `step` line as each load step ends. Every timestamp in `step` and
`request` lines is integer nanoseconds of `time.perf_counter_ns()` relative to the run's `origin_ns`, so that
`origin_ns + t` is the machine's CLOCK_MONOTONIC reading and can be compared with a server's on the same host.

Records only say what happened; every metric is derived from them in `harness.analysis`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import orjson

from harness.records.lines import JsonLines

ErrorKind = Literal[
    "rate_limited",
    "http_4xx",
    "http_5xx",
    "timeout",
    "connect",
    "disconnect",
    "protocol_error",
    "stream_error",
    "client_error",
    "cancelled",
]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)
_T = TypeVar("_T")
MAX_CONFORMANCE_ERRORS = 5  # kept per request; `conformance_error_count` has the full count


@dataclass(slots=True)
class Record:
    """What happened to one request. Times are ns since the run's origin; None when the moment never came.

    `chunk_ns` lists the arrival of every chunk that carried tokens — content, reasoning or tool-call arguments —
    and `chunk_tokens` how many tokens each carried (one each unless `usage` says otherwise, see `apportion`);
    the first `reasoning_chunks` of them were reasoning, so the first output token came in
    `chunk_ns[reasoning_chunks]`. `attempts` counts sends including retries after 429; `throttled_ns` is the time
    lost to those retries, from the first send to the last.
    `dispatched_ns` is when the client took the request up and began building it (in an open loop, ahead of its
    scheduled time); `sent_ns` is when its bytes were handed to the socket, where TTFT and E2E start (stamped just
    before the write), and `written_ns` when that write returned: the bytes left within [sent_ns, written_ns]. When
    the kernel said when it sent the last byte (the loop's own writes on asyncio's loop), both are that time.
    `warmup` says the request was *scheduled* during its step's warm-up; `harness.analysis.service` decides which
    requests a step measures. `user` is the closed-loop user that sent it (None in an open loop).

    A turn of a session is due a think time after its previous turn ended: its `scheduled_ns` is that due time, so
    the think time before it is its `scheduled_ns` less the previous turn's `end_ns` (`harness.analysis.traffic`).

    Arrival stamps are the kernel's when `kernel_timed` (every read that completed an event carried its receive
    time), else the client's loop read the clock. Either way a stamp is of the read, and a read can bring several
    events: unless the kernel counted the read as one segment, all but one that ends the read may have arrived
    earlier, as early as the connection's previous read.
    `chunk_early_ns` lists `[index, ns, woke]` for each content chunk that may have arrived up to `ns` before its
    stamp (none for a chunk alone in its read); `woke`, when not None, is its stamp less a wake-up of the client's
    loop that it arrived no sooner than, less the wake-up latency (`harness.client.selector`). `end_early_ns` is `[ns,
    woke]` for `[DONE]` (empty when it ended its read). `harness.analysis.bounds` turns them into error bounds.
    """

    type: Literal["request"] = "request"
    run_id: str = ""
    step: int = 0
    index: int = 0
    key: str = ""
    user: int | None = None
    warmup: bool = False
    endpoint: str = "chat"
    scheduled_ns: int = 0
    dispatched_ns: int | None = None
    sent_ns: int | None = None
    written_ns: int | None = None
    headers_ns: int | None = None
    first_token_ns: int | None = None
    end_ns: int | None = None
    chunk_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    reasoning_chunks: int = 0  # leading chunks of reasoning (a reasoning model's thinking) before the first output
    # Tuples, empty by default: most records have none, and an empty tuple is one shared object the garbage collector
    # never walks, where two empty lists per record made every collection of a long run slower.
    chunk_early_ns: Sequence[Sequence[int | None]] = ()
    end_early_ns: Sequence[int | None] = ()
    kernel_timed: bool = False
    status: int | None = None
    error_kind: ErrorKind | None = None
    error_detail: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    input_tokens_target: int | None = None
    max_tokens: int | None = None
    request_id: str | None = None
    retry_after_s: float | None = None
    attempts: int = 0
    throttled_ns: int = 0
    chunks_validated: int = 0
    conformance_error_count: int = 0
    conformance_errors: list[str] = field(default_factory=list)
    # What the structured output or the tool calls broke of what was asked; "" when checked and fine, None unchecked.
    output_error: str | None = None
    # Real traffic: the conversation a request is a turn of (`session`, numbered in the run; `turn` from 0 of
    # `session_turns` planned), the tokens its history carried in (the previous turn's prompt and answer, as the
    # server counted them), the shared prefix's group, and the prompt tokens the server said it had cached.
    session: int | None = None
    turn: int | None = None
    session_turns: int | None = None
    history_tokens: int | None = None
    prefix_group: int | None = None
    cached_tokens: int | None = None

    def fail(self, kind: ErrorKind, detail: str) -> None:
        """Keep the first failure: later ones are usually its consequences."""
        if self.error_kind is None:
            self.error_kind = kind
            self.error_detail = detail[:500]

    def nonconformant(self, detail: str) -> None:
        self.conformance_error_count += 1
        if len(self.conformance_errors) < MAX_CONFORMANCE_ERRORS:
            self.conformance_errors.append(detail[:300])


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The first line of a run file. `origin_ns` is `time.perf_counter_ns()` at the run's start; `environment` is
    what the run was measured on (`harness.target.provenance`; empty when its writer did not say)."""

    run_id: str
    started_at: str
    started_unix_ns: int
    origin_ns: int
    tool: str = "harness bench"
    host: str = ""
    pid: int = 0
    target: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    type: Literal["run"] = "run"
    clock: str = "perf_counter_ns"

    @classmethod
    def start(
        cls,
        run_id: str,
        *,
        tool: str = "harness bench",
        target: dict[str, Any],
        config: dict[str, Any],
        environment: dict[str, Any] | None = None,
    ) -> RunInfo:
        # Read both clocks back to back: the pair maps every monotonic timestamp of the run to wall time.
        origin_ns = time.perf_counter_ns()
        unix_ns = time.time_ns()
        started = datetime.fromtimestamp(unix_ns / 1e9, UTC).isoformat(timespec="milliseconds")
        host, pid = socket.gethostname(), os.getpid()
        return cls(run_id, started, unix_ns, origin_ns, tool, host, pid, target, config, environment or {})


@dataclass(frozen=True, slots=True)
class StepInfo:
    """A load step as it was asked for and as it ran; written when the step ends.

    `loop_lag_ns` are the event-loop lag samples taken during the step, `cpu_s` the client process's CPU time
    over `ended_ns - started_ns`, and `wake_ns` the largest wake-up latency its loop's selector measured
    (`harness.client.selector`; 0 when it has none). `stopped_early` says why the run stopped sending in this step, if
    it did (`harness.load.stop_rule`); no later step ran — except in a capacity search, where it ends only its trial.
    `warmup_auto` says the step measures from its steady state, found after the fact (`harness.analysis.steady`);
    `repeat` which run of a repeated plan the step belongs to (0, 1, …; None when the plan ran once); `saturated_ns`
    when the live saturation test found the step's queue growing and stopped its sending (`--stop-when-saturated`).
    """

    run_id: str
    step: int
    label: str
    mode: Literal["concurrency", "rate", "ramp"]
    started_ns: int
    measure_start_ns: int
    dispatch_end_ns: int
    ended_ns: int
    concurrency: int | None = None
    rate: float | None = None
    rate_end: float | None = None
    arrival: str | None = None
    burstiness: float | None = None
    max_concurrency: int | None = None
    warmup_s: float = 0.0
    duration_s: float | None = None
    requests: int | None = None
    cpu_s: float = 0.0
    loop_lag_ns: list[int] = field(default_factory=list)
    loop_lag_interval_ns: int = 0
    wake_ns: int = 0
    stopped_early: str | None = None
    warmup_auto: bool = False
    repeat: int | None = None
    saturated_ns: int | None = None
    type: Literal["step"] = "step"


@dataclass(slots=True)
class RunFile:
    run: RunInfo
    steps: list[StepInfo]
    requests: list[Record]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()


def apportion(chunk_chars: Sequence[int], total_tokens: int | None) -> list[int]:
    """Tokens per content chunk: one each, unless `usage` reports another total.

    Then the total is spread over the chunks in proportion to their text length (largest remainders first), so
    that a server that packs several tokens into one chunk is counted per token.
    """
    n = len(chunk_chars)
    if total_tokens is None or total_tokens == n or n == 0:
        return [1] * n
    chars = sum(chunk_chars)
    if chars == 0:
        weights = [1.0] * n
        chars = n
    else:
        weights = [float(c) for c in chunk_chars]
    shares = [w * total_tokens / chars for w in weights]
    tokens = [int(s) for s in shares]
    short = total_tokens - sum(tokens)
    for i in sorted(range(n), key=lambda i: tokens[i] - shares[i])[:short]:
        tokens[i] += 1
    return tokens


class RecordWriter(JsonLines):
    """Appends a run's lines to `records.jsonl` as they come; flushed at every step and on close."""

    def __init__(self, path: Path, run: RunInfo) -> None:
        super().__init__(path, run)

    def write(self, record: Record) -> None:
        self.line(record)

    def write_step(self, step: StepInfo) -> None:
        self.line(step, flush=True)


def _build(cls: type[_T], obj: dict[str, Any]) -> _T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in obj.items() if k in names})


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            obj = orjson.loads(line)
            if not isinstance(obj, dict) or obj.get("type") not in ("run", "step", "request"):
                raise ValueError(f"{path}:{n}: not a run, step or request line")
            yield obj


def _request(obj: dict[str, Any]) -> Record:
    """A request line as its writer held it: JSON's arrays back into the tuples the record keeps them in."""
    record = _build(Record, obj)
    record.chunk_early_ns = tuple(tuple(entry) for entry in record.chunk_early_ns)
    record.end_early_ns = tuple(record.end_early_ns)
    return record


def read_run(path: Path) -> RunFile:
    """A run file back into objects; unknown fields (from newer writers) are ignored."""
    run: RunInfo | None = None
    steps: list[StepInfo] = []
    requests: list[Record] = []
    for obj in iter_lines(path):
        kind = obj["type"]
        if kind == "run":
            if run is not None:
                raise ValueError(f"{path}: more than one run line")
            run = _build(RunInfo, obj)
        elif kind == "step":
            steps.append(_build(StepInfo, obj))
        else:
            requests.append(_request(obj))
    if run is None:
        raise ValueError(f"{path}: no run line")
    steps.sort(key=lambda s: s.step)
    return RunFile(run, steps, requests)


def write_run(path: Path, run: RunInfo, steps: Iterable[StepInfo], requests: Iterable[Record]) -> None:
    """A whole run at once (tests, converters)."""
    with RecordWriter(path, run) as writer:
        for record in requests:
            writer.write(record)
        for step in steps:
            writer.write_step(step)
