"""Error bounds: how far the client itself may have moved each number it reports, from what the run measured.

`harness.analysis` computes every number from the records' raw timestamps; this module says, for each one, how
far the true value can lie from it because of the client. Nothing here is a fixed limit: every width comes from the
run's own records. The model, per request (times on the client's monotonic clock):

- **send** — `sent_ns` is stamped just before the write of the request's bytes and `written_ns` when that write
  returned: the bytes left at some moment in [sent, written]. When the kernel reported the time it sent the last
  byte (`harness.client.stamped_socket`), both are that time and the width is 0.
- **reads** — each read of a response is stamped with the kernel's receive time of its last segment (records
  with `kernel_timed`), or with the time the client's loop read it. Every event of a read that the kernel counted
  as one segment arrived at that stamp (`harness.client.stamped_socket`), and so did an event that ended where its
  read ended (for a kernel-timed read, only if the body's end did not come after it in the same read: the
  terminator may have been the last segment). Any other event of the read arrived no later than the stamp, and
  after the connection's previous read (which emptied the socket) or after what the loop's selector knows for
  certain; and, when that read came in an iteration woken from a wait, no sooner than the wake-up less the step's
  largest measured wake-up latency (`harness.client.selector`; an estimate). `chunk_early_ns` and `end_early_ns`
  hold both.
- **loop** — a read that the loop, not the kernel, timed may also be late by however long the loop took to come
  round to it. That is bounded by the step's largest event-loop lag (`harness.load.meters.LoopMonitor`): an
  estimate from samples every 20 ms, not a proof. With kernel stamps (the default client on asyncio's loop) it is 0.
- **granularity** — the kernel stamps a segment as it is delivered, which on one host happens within the sender's
  write, up to `DELIVERY_NS` after the sender's own stamp; every arrival may be that much late against the sender's
  clock. (Converting the kernel's wall-clock stamp to the monotonic clock adds well under a microsecond.)
- **lateness** — in an open loop a request is due at its scheduled time (with a concurrency cap, once it holds a
  slot: from its take-up); its first send after that is the client's lateness. In a closed loop it is the time from
  a user taking its next request up to sending it. E2E from the schedule includes it; no other latency does.

So a measured value m stands for a true value in [m − down, m + up], with
- TTFT, TTFO and E2E: down = send + reads (first chunk; first output chunk; [DONE]) + loop + granularity, up = 0;
- an ITL gap, per token (gap / tokens): down = reads (this chunk) + loop + granularity, up = reads (the chunk
  before) + loop + granularity;
- TPOT, (last − first) / (n − 1): down = (reads (last) + loop + g) / (n − 1), up = (reads (first) + loop + g) / (n − 1);
- E2E from the schedule: down = lateness + reads ([DONE]) + loop + granularity, up = 0.
The mean, the min, the max and every nearest-rank percentile are monotone in each sample, so the true statistic lies
between the statistic of the lower ends and that of the upper ends; the bound is the larger distance from the value
reported. No assumption on independence or on the distribution of the errors is made.

**The load offered** — a closed loop's users are meant to be in flight all the time: the share of the sending
window in which a user had no request out (from one request's end to the first send of its next) is the client's,
and the load offered was users × (1 − that share). An open loop's offered rate is the rate of its first sends
against the rate of its due times. Throughput moves at most in proportion to the load offered (a server's
throughput is concave in its load), so its bound is its value times the load's relative error.

Not modelled: how the server would have answered the load the client failed to offer (its latencies are measured
under the load actually offered), and any network between client and server (the bounds are of the client's own
measurement; on one host, delivery is the granularity above).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.analysis.stats import STATS, Floats, round6, statistics
from harness.records.record import Record

DELIVERY_NS = 50_000
"""How long after the sender's stamp the receiving kernel may stamp a segment on one host (loopback delivery and
the server's own write included), and how much the clock conversion can add: far below every tolerance."""
Cause = Literal["send", "reads", "loop", "granularity", "lateness"]
CAUSES: tuple[Cause, ...] = ("send", "reads", "loop", "granularity", "lateness")
_MS = 1e6


@dataclass(frozen=True, slots=True)
class Samples:
    """Measured values (ms) and, per cause, how far below (`down`) and above (`up`) each true value may lie (ms)."""

    value: Floats
    down: Mapping[Cause, Floats]
    up: Mapping[Cause, Floats]

    def _bounds(self, down: Floats, up: Floats) -> Floats:
        measured = statistics(self.value)
        return np.maximum(measured - statistics(self.value - down), statistics(self.value + up) - measured)

    def bounds(self) -> tuple[dict[str, float | None], dict[str, str | None]]:
        """Per statistic of `harness.analysis.stats.STATS`: its bound (ms), and the cause that alone bounds it most."""
        finite = np.isfinite(self.value)
        if not finite.any():
            return dict.fromkeys(STATS), dict.fromkeys(STATS)
        part = Samples(
            self.value[finite],
            {c: w[finite] for c, w in self.down.items()},
            {c: w[finite] for c, w in self.up.items()},
        )
        zero = np.zeros(len(part.value))
        total = part._bounds(sum(part.down.values(), zero), sum(part.up.values(), zero))
        by_cause = {c: part._bounds(part.down.get(c, zero), part.up.get(c, zero)) for c in CAUSES}
        causes: dict[str, str | None] = {}
        for i, name in enumerate(STATS):
            worst = max(CAUSES, key=lambda c: by_cause[c][i])
            causes[name] = worst if by_cause[worst][i] > 0 else None
        return {name: _up(float(b)) for name, b in zip(STATS, total, strict=True)}, causes


@dataclass(frozen=True, slots=True)
class Estimates:
    """Per request (ms), what its step measured of its client: the largest event-loop lag (for reads the loop timed)
    and the largest wake-up latency of the loop's selector (for reads of a woken iteration)."""

    loop_ms: Floats
    wake_ms: Floats

    @classmethod
    def none(cls, n: int) -> Estimates:
        return cls(np.zeros(n), np.zeros(n))

    def __getitem__(self, keep: Floats | Sequence[int] | slice) -> Estimates:
        return Estimates(self.loop_ms[keep], self.wake_ms[keep])


@dataclass(frozen=True, slots=True)
class Widths:
    """Per request (ms), aligned with the records: the widths the model above composes."""

    send: Floats
    first: Floats  # reads: how early the first content chunk may have come
    last: Floats  # reads: the last content chunk
    output: Floats  # reads: the first output chunk (after any reasoning)
    end: Floats  # reads: [DONE]
    loop: Floats  # the step's loop-lag estimate, for a request whose reads the loop timed; else 0
    lateness: Floats

    @classmethod
    def of(cls, records: Sequence[Record], estimates: Estimates, lateness_ms: Floats) -> Widths:
        n = len(records)
        send, first, last, output, end = (np.zeros(n) for _ in range(5))
        for i, r in enumerate(records):
            if r.sent_ns is not None and r.written_ns is not None:
                send[i] = max(0, r.written_ns - r.sent_ns) / _MS
            wake = float(estimates.wake_ms[i])
            early = chunk_early_ms(r, wake)
            if r.chunk_ns:
                first[i] = early.get(0, 0.0)
                last[i] = early.get(len(r.chunk_ns) - 1, 0.0)
                output[i] = early.get(r.reasoning_chunks, 0.0)
            if len(r.end_early_ns) == 2:
                end[i] = early_ms(r.end_early_ns[0], r.end_early_ns[1], wake)
        loop = np.where([r.kernel_timed for r in records], 0.0, estimates.loop_ms) if n else np.zeros(0)
        return cls(send, first, last, output, end, np.asarray(loop, dtype=np.float64), lateness_ms)

    def arrival(self, reads: Floats) -> dict[Cause, Floats]:
        """How early an arrival stamped with these read widths may have been, by cause."""
        return {"reads": reads, "loop": self.loop, "granularity": np.full(len(reads), DELIVERY_NS / _MS)}


def early_ms(sure_ns: int | None, woke_ns: int | None, wake_ms: float) -> float:
    """How early (ms) an event of a multi-event read may have arrived: no sooner than `sure_ns` before its stamp
    for certain, nor than its wake-up's offset plus the wake-up latency when it came in a woken iteration."""
    sure = (sure_ns or 0) / _MS
    if woke_ns is None:
        return sure
    return min(sure, max(0.0, woke_ns / _MS + wake_ms))


def chunk_early_ms(r: Record, wake_ms: float) -> dict[int, float]:
    """Per content chunk of a multi-event read, by index: `early_ms` (chunks alone in their read are exact)."""
    out: dict[int, float] = {}
    for entry in r.chunk_early_ns:
        index, sure = entry[0], entry[1] if len(entry) > 1 else 0
        if index is not None:
            out[index] = early_ms(sure, entry[2] if len(entry) > 2 else None, wake_ms)
    return out


def _nothing(n: int) -> dict[Cause, Floats]:
    return {"send": np.zeros(n)}


def ttft(value: Floats, w: Widths) -> Samples:
    return Samples(value, {"send": w.send, **w.arrival(w.first)}, _nothing(len(value)))


def ttfo(value: Floats, w: Widths) -> Samples:
    """Time to the first output token: as TTFT, to the first chunk after the reasoning."""
    return Samples(value, {"send": w.send, **w.arrival(w.output)}, _nothing(len(value)))


def e2e(value: Floats, w: Widths) -> Samples:
    return Samples(value, {"send": w.send, **w.arrival(w.end)}, _nothing(len(value)))


def e2e_from_scheduled(value: Floats, w: Widths) -> Samples:
    return Samples(value, {"lateness": w.lateness, **w.arrival(w.end)}, _nothing(len(value)))


def tpot(value: Floats, w: Widths, tokens: Floats) -> Samples:
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(tokens > 1, 1.0 / (tokens - 1), np.nan)
    down = {c: v * per for c, v in w.arrival(w.last).items()}
    up = {c: v * per for c, v in w.arrival(w.first).items()}
    return Samples(value, down, up)


def gaps(at_ns: Sequence[int], tokens: Sequence[int], early_ms: Floats, late_ms: Floats) -> tuple[Floats, ...]:
    """One stream's inter-token latencies (ms) per token — a chunk carrying k tokens gives k samples of its gap / k
    — as (value, down, up, share): a chunk that may have come `early_ms` before its stamp shortens the gap it
    closes and lengthens the next; one that may have come `late_ms` after it does the opposite. Widths are shared
    among a gap's tokens (`share` = 1 / k per sample). Chunks of no token are passed over."""
    at = np.asarray(at_ns, dtype=np.int64)
    k_all = np.asarray(tokens, dtype=np.int64) if len(tokens) == len(at) else np.ones(len(at), dtype=np.int64)
    keep = k_all > 0
    at, k_all, early, late = at[keep], k_all[keep], early_ms[keep], late_ms[keep]
    if len(at) < 2:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty, empty, empty
    k = k_all[1:]
    share = np.repeat(1.0 / k, k)
    value = np.repeat(np.diff(at) / k / _MS, k)
    down = np.repeat(early[1:] + late[:-1], k) * share
    up = np.repeat(early[:-1] + late[1:], k) * share
    return value, down, up, share


def itl(records: Sequence[Record], estimates: Estimates) -> Samples:
    """Inter-token latencies (ms) per token (`gaps`), with the widths of each gap's two ends."""
    values: list[Floats] = []
    downs: list[Floats] = []
    ups: list[Floats] = []
    loops: list[Floats] = []
    shares: list[Floats] = []
    for r, lag, wake in zip(records, estimates.loop_ms, estimates.wake_ms, strict=True):
        if len(r.chunk_ns) < 2:
            continue
        early = np.zeros(len(r.chunk_ns))
        for index, ms in chunk_early_ms(r, float(wake)).items():
            if 0 <= index < len(early):
                early[index] = ms
        value, down, up, share = gaps(r.chunk_ns, r.chunk_tokens, early, np.zeros(len(early)))
        values.append(value)
        downs.append(down)
        ups.append(up)
        loops.append(share * (0.0 if r.kernel_timed else float(lag)))
        shares.append(share)
    if not values:
        empty = np.empty(0, dtype=np.float64)
        return Samples(empty, {"reads": empty}, {"reads": empty})
    loop = np.concatenate(loops)
    grain = np.concatenate(shares) * (DELIVERY_NS / _MS)
    return Samples(
        np.concatenate(values),
        {"reads": np.concatenate(downs), "loop": loop, "granularity": grain},
        {"reads": np.concatenate(ups), "loop": loop, "granularity": grain},
    )


def _up(value: float) -> float:
    """A bound rounded as the summary keeps numbers (6 decimals), upwards: rounding must not shrink it."""
    return math.ceil(value * 1e6 - 1e-6) / 1e6


def first_sent_ns(r: Record) -> int | None:
    """When a request was first written: before the waits of its 429 retries, which are throttling."""
    return None if r.sent_ns is None else r.sent_ns - r.throttled_ns


def _due_ns(r: Record, capped: bool) -> int:
    """When a request was due: its scheduled time, or with a concurrency cap its take-up, once it had a slot."""
    if capped and r.dispatched_ns is not None:
        return max(r.scheduled_ns, r.dispatched_ns)
    return r.scheduled_ns


def lateness_ms(records: Sequence[Record], capped: bool = False) -> Floats:
    """Per request, the client's lateness (ms): from when it was due to its first send (0 for one never sent).

    In a closed loop a request is due when its user takes it up (`scheduled_ns`); in an open loop at its scheduled
    time, or with a cap (`capped`) once it had its slot.
    """
    out = np.zeros(len(records))
    for i, r in enumerate(records):
        if (sent := first_sent_ns(r)) is not None:
            out[i] = max(0, sent - _due_ns(r, capped)) / _MS
    return out


def idle_share(records: Sequence[Record], users: int, start_ns: int, end_ns: int) -> float | None:
    """Of a closed loop's sending window, the share of user time with no request of the user out (model above).

    A request is out from its first send (its take-up, if it never went) to its end, 429 retries included;
    `records` are all of the step's, warm-up ones too (one in flight as the window opens covers its start). A
    session's user thinking between two turns is not idle: that wait is the load asked for (`harness.load.sessions`).
    """
    span = end_ns - start_ns
    if span <= 0 or users < 1 or all(r.user is None for r in records):
        return None  # records that do not say which user sent them (older writers) tell nothing of idleness
    spans: dict[int, list[tuple[int, int]]] = {}
    turn_ends = {(r.session, r.turn): r.end_ns for r in records if r.session is not None and r.end_ns is not None}
    for r in records:
        if r.user is None or r.end_ns is None:
            continue
        began = first_sent_ns(r)
        began = began if began is not None else r.dispatched_ns if r.dispatched_ns is not None else r.scheduled_ns
        if r.session is not None and r.turn:
            began = min(began, turn_ends.get((r.session, r.turn - 1), began))  # thinking since the turn before
        lo, hi = max(began, start_ns), min(r.end_ns, end_ns)
        if hi > lo:
            spans.setdefault(r.user, []).append((lo, hi))
    covered = sum(_union(v) for v in spans.values())
    return round6(max(0.0, 1.0 - covered / (users * span)))


def _union(spans: list[tuple[int, int]]) -> int:
    total, reach = 0, None
    for lo, hi in sorted(spans):
        if reach is None or lo > reach:
            total += hi - lo
            reach = hi
        elif hi > reach:
            total += hi - reach
            reach = hi
    return total


def rate_error(records: Sequence[Record], capped: bool) -> tuple[float, float, float] | None:
    """An open loop's offered rate: (rate of due times, rate of first sends, relative error) over `records`."""
    due = np.array([_due_ns(r, capped) for r in records if first_sent_ns(r) is not None], dtype=np.float64)
    sent = np.array([s for r in records if (s := first_sent_ns(r)) is not None], dtype=np.float64)
    if len(sent) < 2 or due.max() <= due.min() or sent.max() <= sent.min():
        return None
    asked = (len(due) - 1) / ((due.max() - due.min()) / 1e9)
    achieved = (len(sent) - 1) / ((sent.max() - sent.min()) / 1e9)
    return round6(asked), round6(achieved), round6(abs(achieved / asked - 1.0))
