"""When a run stops early: most of its latest requests failed, so going on would only measure the failure.

A server that refuses every request answers fast, and a load generator would then send failing requests as fast
as they are refused — thousands a second, none of them measuring anything. The rule looks at the last `window`
finished requests once `minimum` have finished in the run (warm-up included: a target that fails from the first
request need not wait for the measurement to begin), and trips when the share that failed exceeds `max_error_rate`.
A 429 is not a failure here: above the concurrency limit it is the expected answer, reported as throttling.
"""

from __future__ import annotations

import argparse
from collections import Counter, deque

from harness.records.record import Record

DEFAULT_MAX_ERROR_RATE = 0.5
WINDOW = 50
MINIMUM = 20
_NOT_FAILURES = frozenset({None, "rate_limited"})
_DETAIL_CHARS = 160


def max_error_rate(text: str) -> float:
    """`--stop-error-rate`: a share in (0, 1]; 1 never stops (no share of failures exceeds it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1 (1: never stop), not {text}")
    return value


class StopRule:
    """Fed every finished request; `reason` says why the run must stop, once it must."""

    def __init__(
        self, max_error_rate: float = DEFAULT_MAX_ERROR_RATE, window: int = WINDOW, minimum: int = MINIMUM
    ) -> None:
        if not 0 < max_error_rate <= 1:
            raise ValueError("the stop error rate must be above 0 and at most 1")
        if not 0 < minimum <= window:
            raise ValueError("the minimum must be at least 1 and at most the window")
        self.max_error_rate = max_error_rate
        self.minimum = minimum
        self.finished = 0
        self.reason: str | None = None
        self._latest: deque[Record | None] = deque(maxlen=window)  # None: not a failure
        self._failed = 0  # failures among `_latest`, kept as it moves: this runs as every request ends

    def renewed(self) -> StopRule:
        """The same rule with nothing observed yet: a capacity search's next trial starts afresh."""
        return StopRule(self.max_error_rate, self._latest.maxlen or WINDOW, self.minimum)

    def observe(self, record: Record) -> str | None:
        """Count one finished request; the reason to stop, from the moment the rule trips (and ever after)."""
        self.finished += 1
        latest = self._latest
        if len(latest) == latest.maxlen and latest[0] is not None:
            self._failed -= 1  # the oldest is about to leave the window
        failure = None if record.error_kind in _NOT_FAILURES else record
        latest.append(failure)
        self._failed += failure is not None
        if self.reason is None and self.finished >= self.minimum and self._failed > self.max_error_rate * len(latest):
            self.reason = self._explain([r for r in latest if r is not None])
        return self.reason

    def _explain(self, failed: list[Record]) -> str:
        kind, _ = Counter(r.error_kind for r in failed).most_common(1)[0]
        latest = next(r for r in reversed(failed) if r.error_kind == kind)
        detail = (latest.error_detail or "")[:_DETAIL_CHARS]
        return f"{len(failed)} of the last {len(self._latest)} requests failed ({kind}: {detail})"
