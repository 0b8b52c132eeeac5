"""Timestamped trace replay: requests sent at a trace's own times, with its input and output lengths.

Three public formats are read (none is shipped; the README says where to get them):

- **Mooncake** (JSONL): `timestamp` (ms), `input_length`, `output_length` and `hash_ids`, each id a block of 512
  tokens. The same id gives the same text in every request of a run (its words drawn from a generator seeded by the
  id and the run's seed), so the trace's prefix sharing reaches the server's prefix cache as it was recorded; a
  request's last block is cut to its length, and tokens beyond its blocks are its own.
- **Azure LLM inference trace** (CSV): `TIMESTAMP` (a date and time, fractions of a second to any precision),
  `ContextTokens`, `GeneratedTokens`.
- **BurstGPT** (CSV): `Timestamp` (seconds), `Request tokens`, `Response tokens` (and columns not used).

The whole file is read and checked before anything is sent: a line that is not what its format says stops the run
with `FILE:LINE: expected …, got …`. Requests are replayed in time order from the first one's time (or from
`--trace-start`, up to `--trace-stop`, both seconds of the trace's own clock), each due at its offset times
`--time-scale` (0.5: twice as fast), through the open loop's pacer (`harness.load.loops`), which writes each
request at its due time. A length of 0 (BurstGPT's failed requests) is replayed as 1 token.
"""

from __future__ import annotations

import csv
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from harness.load.plan import StepPlan
from harness.load.prompts import Calibration, PromptItem, random_words

TraceFormat = Literal["mooncake", "azure", "burstgpt"]
FORMATS: tuple[TraceFormat, ...] = ("mooncake", "azure", "burstgpt")
BLOCK_TOKENS = 512  # Mooncake's hash_ids each stand for a block of this many tokens
_CSV_COLUMNS: dict[TraceFormat, tuple[str, str, str]] = {
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens"),
}
_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace: when (seconds on the trace's clock), how long its prompt and answer were, the blocks
    its prompt is made of (Mooncake), and the file's line it came from."""

    at_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()
    line: int = 0


@dataclass(frozen=True, slots=True)
class Replay:
    """A trace to replay, and which part of it how fast: parsed once at the edge (`read`)."""

    path: Path
    format: TraceFormat
    requests: tuple[TraceRequest, ...]  # every request of the file, in time order
    time_scale: float = 1.0
    start_s: float | None = None  # seconds of the trace's clock; None: its first request
    stop_s: float | None = None  # None: its last request

    def __post_init__(self) -> None:
        if not self.time_scale > 0 or not math.isfinite(self.time_scale):
            raise ValueError(f"--time-scale must be a positive number, not {self.time_scale!r}")
        if self.start_s is not None and self.stop_s is not None and self.stop_s <= self.start_s:
            raise ValueError("--trace-stop must come after --trace-start")
        if not self.selected:
            raise ValueError(f"{self.path}: no request of the trace lies between --trace-start and --trace-stop")

    @property
    def origin_s(self) -> float:
        return self.start_s if self.start_s is not None else self.requests[0].at_s

    @property
    def selected(self) -> tuple[TraceRequest, ...]:
        """The requests replayed: from the start (inclusive) to the stop (exclusive)."""
        start, stop = self.origin_s, self.stop_s if self.stop_s is not None else math.inf
        return tuple(r for r in self.requests if start <= r.at_s < stop)

    def schedule(self) -> tuple[float, ...]:
        """When each selected request is due, seconds after the replay's start."""
        origin = self.origin_s
        return tuple((r.at_s - origin) * self.time_scale for r in self.selected)

    def plan(self, template: StepPlan) -> StepPlan:
        """The one open-loop step that replays it: the schedule, and its mean rate as the step's rate."""
        schedule = self.schedule()
        span = schedule[-1] - schedule[0]
        rate = (len(schedule) - 1) / span if span > 0 else float(len(schedule))
        scale = f",x{self.time_scale:g}" if self.time_scale != 1 else ""
        return StepPlan(
            0,
            "rate",
            rate=rate,
            arrival="trace",
            schedule=schedule,
            name=f"trace={self.path.name}{scale}",
            max_concurrency=template.max_concurrency,
            warmup_s=template.warmup_s,
            warmup_requests=template.warmup_requests,
            requests=len(schedule),
            seed=template.seed,
            send_ahead_s=template.send_ahead_s,
        )

    def describe(self) -> dict[str, Any]:
        selected = self.selected
        return {
            "kind": "trace",
            "file": str(self.path),
            "format": self.format,
            "requests": len(selected),
            "time_scale": self.time_scale,
            "start_s": self.start_s,
            "stop_s": self.stop_s,
            "span_s": selected[-1].at_s - selected[0].at_s,
        }


def read(path: Path, fmt: TraceFormat) -> tuple[TraceRequest, ...]:
    """Every request of the file, checked, in time order; ValueError naming the file and line of the first fault."""
    try:
        with path.open("r", encoding="utf-8", newline="") as f:
            found = list(_mooncake(f, path) if fmt == "mooncake" else _csv(f, path, fmt))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    if not found:
        raise ValueError(f"{path}: no requests in the {fmt} trace")
    return tuple(sorted(found, key=lambda r: r.at_s))


def _mooncake(lines: Iterator[str], path: Path) -> Iterator[TraceRequest]:
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{where}: expected a JSON object, got text that is not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object, got {_shown(obj)}")
        at_ms = _number(obj.get("timestamp"), where, "timestamp (ms)")
        ids = obj.get("hash_ids", [])
        if not isinstance(ids, list) or not all(_count(i) for i in ids):
            raise ValueError(f"{where}: expected hash_ids, a list of integers >= 0, got {_shown(ids)}")
        yield TraceRequest(
            at_ms / 1000,
            _tokens(obj.get("input_length"), where, "input_length"),
            _tokens(obj.get("output_length"), where, "output_length"),
            tuple(ids),
            n,
        )


def _csv(f: Iterator[str], path: Path, fmt: TraceFormat) -> Iterator[TraceRequest]:
    reader = csv.DictReader(f)
    columns = _CSV_COLUMNS[fmt]
    missing = [c for c in columns if c not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(
            f"{path}:1: expected a {fmt} header with the columns {', '.join(columns)}, "
            f"got {', '.join(reader.fieldnames or ()) or 'nothing'}"
        )
    time_column, input_column, output_column = columns
    for row in reader:
        where = f"{path}:{reader.line_num}"
        raw = row.get(time_column)
        at_s = _datetime_s(raw, where) if fmt == "azure" else _number(_float(raw), where, f"{time_column} (seconds)")
        yield TraceRequest(
            at_s,
            _tokens(_int(row.get(input_column)), where, input_column),
            _tokens(_int(row.get(output_column)), where, output_column),
            (),
            reader.line_num,
        )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: expected {what}, a number >= 0, got {_shown(value)}")
    return float(value)


def _tokens(value: Any, where: str, what: str) -> int:
    if not _count(value):
        raise ValueError(f"{where}: expected {what}, an integer >= 0, got {_shown(value)}")
    return max(1, int(value))


def _float(text: str | None) -> float | str | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text


def _int(text: str | None) -> int | str | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return text


def _datetime_s(text: str | None, where: str) -> float:
    """A date and time as seconds since the epoch (UTC unless it says otherwise), to the microsecond."""
    match = _DATETIME.fullmatch((text or "").strip())
    if match is None:
        raise ValueError(f"{where}: expected TIMESTAMP, a date and time (2023-11-16 18:15:46.68), got {_shown(text)}")
    day, clock, fraction, zone = match.groups()
    when = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=UTC)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        when -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return when.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def items(requests: Sequence[TraceRequest], calibration: Calibration, seed: int) -> list[PromptItem]:
    """One prompt per request: its blocks' texts (the same for the same id), then words of its own, about
    `input_tokens` long in all as the calibration counts them; asking for `output_tokens`."""
    block_words = max(1, round(BLOCK_TOKENS / calibration.tokens_per_word))
    blocks: dict[int, list[str]] = {}
    out = []
    for r in requests:
        left = calibration.words_for(r.input_tokens)
        words: list[str] = []
        for block in r.hash_ids:
            if left <= 0:
                break
            if block not in blocks:
                blocks[block] = random_words(random.Random(f"block:{seed}:{block}"), block_words).split()
            words += blocks[block][:left]
            left -= block_words
        if left > 0:
            words.append(random_words(random.Random(f"own:{seed}:{r.line}"), left))
        message = ({"role": "user", "content": " ".join(words)},)
        out.append(PromptItem(message, None, r.output_tokens, r.input_tokens))
    return out
