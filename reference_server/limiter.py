"""Per-key concurrency limit: at most N requests in flight, the next one rejected at once.

Everything runs on one event loop, so taking and releasing a slot is a plain counter update with no await in
between: no lock, and no window in which two requests can both see the last free slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

# How a request that held a slot ended: its last byte written, its client gone, or an error answered.
Outcome = Literal["finished", "abandoned", "failed"]


@dataclass(frozen=True, slots=True)
class Slot:
    """A taken slot; `release` must be called exactly once."""

    key_name: str
    limit: int
    remaining: int


class Limiter(Protocol):
    """What the request path asks of a limiter (the limiter faults wrap the real one behind the same methods)."""

    @property
    def default_limit(self) -> int: ...

    def try_acquire(self, key_name: str, limit: int | None = None) -> Slot | None: ...

    def release(self, slot: Slot, outcome: Outcome = "finished", *, streamed: bool = False) -> None: ...

    def in_flight(self, key_name: str) -> int: ...

    def snapshot(self) -> dict[str, int]: ...


class ConcurrencyLimiter:
    def __init__(self, default_limit: int) -> None:
        if default_limit < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self.default_limit = default_limit
        self._in_flight: dict[str, int] = {}

    def try_acquire(self, key_name: str, limit: int | None = None) -> Slot | None:
        """Take a slot, or return None (and take nothing) when the key is at its limit."""
        cap = limit if limit is not None else self.default_limit
        used = self._in_flight.get(key_name, 0)
        if used >= cap:
            return None
        self._in_flight[key_name] = used + 1
        return Slot(key_name, cap, cap - used - 1)

    def release(self, slot: Slot, outcome: Outcome = "finished", *, streamed: bool = False) -> None:
        """Give the slot back. How its request ended (`outcome`, `streamed`) matters only to a faulty limiter."""
        used = self._in_flight[slot.key_name] - 1
        if used < 0:
            raise RuntimeError(f"slot of {slot.key_name!r} released twice")
        self._in_flight[slot.key_name] = used

    def in_flight(self, key_name: str) -> int:
        return self._in_flight.get(key_name, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._in_flight)
