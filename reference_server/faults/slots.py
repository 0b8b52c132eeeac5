"""The limiter faults: a limiter that keeps slots it should give back, or counts every key together.

`FaultyLimiter` wraps the server's `ConcurrencyLimiter` behind the same methods, so the request path takes and
releases its slot the same way with or without a fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_server.faults.catalog import Fault
from reference_server.limiter import Limiter, Outcome, Slot

SHARED_KEY = "shared"  # the one counter of `shared_limit`


@dataclass(slots=True)
class SlotLedger:
    """The limiter faults' memory, one per server: it outlives the requests whose faults wrote it."""

    ghosts: dict[str, int] = field(default_factory=dict)  # slots held by nothing, per key
    rejections: dict[str, int] = field(default_factory=dict)  # 429s in a row, per key


class FaultyLimiter:
    """One request's view of the limiter under its fault: a shared counter, or slots kept by requests that are over
    ("ghosts").

    A ghost slot is freed when its key has nothing in flight any more, so that a leak shows only while requests
    overlap and one faulty step does not spill into unrelated ones. Ghosts belong to one limiter (one server), in
    its ledger; they vanish with it.
    """

    def __init__(self, fault: Fault, arg: int, limiter: Limiter, ledger: SlotLedger) -> None:
        self.fault = fault
        self.arg = arg
        self.limiter = limiter
        self.ledger = ledger

    @property
    def default_limit(self) -> int:
        return self.limiter.default_limit

    def try_acquire(self, key_name: str, limit: int | None = None) -> Slot | None:
        """A slot of the key's limit less its ghosts; under `reject_leak` the Nth refusal in a row leaks one."""
        name = self._counter(key_name)
        cap = limit or self.limiter.default_limit
        slot = self.limiter.try_acquire(name, cap - self.ledger.ghosts.get(name, 0))
        if slot is not None:
            self.ledger.rejections[name] = 0
            return slot
        run = self.ledger.rejections[name] = self.ledger.rejections.get(name, 0) + 1
        if self.fault is Fault.REJECT_LEAK and run >= max(self.arg, 1):
            self._haunt(name)
        return None

    def release(self, slot: Slot, outcome: Outcome = "finished", *, streamed: bool = False) -> None:
        """Give the slot back, and keep a ghost in its place where the fault says so."""
        self.limiter.release(slot, outcome, streamed=streamed)
        key = slot.key_name
        self.ledger.rejections[key] = 0
        if self.limiter.in_flight(key) == 0:
            self.ledger.ghosts.pop(key, None)
            return
        if (self.fault is Fault.LATE_RELEASE and outcome == "finished") or (
            self.fault is Fault.LEAK_ABANDONED and outcome == "abandoned" and not streamed
        ):
            self._haunt(key)

    def in_flight(self, key_name: str) -> int:
        return self.limiter.in_flight(self._counter(key_name))

    def snapshot(self) -> dict[str, int]:
        return self.limiter.snapshot()

    def _counter(self, key_name: str) -> str:
        """The counter a key's requests take their slots from."""
        return SHARED_KEY if self.fault is Fault.SHARED_LIMIT else key_name

    def _haunt(self, key_name: str) -> None:
        self.ledger.ghosts[key_name] = self.ledger.ghosts.get(key_name, 0) + 1
