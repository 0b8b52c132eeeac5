"""The limiter faults of the reference server: a shared counter, and ghost slots that last while a key is busy."""

from __future__ import annotations

from reference_server.faults import Fault, FaultPlan, SlotFaults, SlotLedger
from reference_server.limiter import ConcurrencyLimiter


def test_a_finished_request_keeps_its_slot_only_while_others_are_in_flight() -> None:
    limiter = ConcurrencyLimiter(2)
    faults = SlotFaults(FaultPlan(Fault.LATE_RELEASE, 0), limiter, SlotLedger())
    held = faults.acquire("k", 2)
    done = faults.acquire("k", 2)
    assert held is not None and done is not None
    faults.release(done, "finished", streamed=True)
    assert faults.acquire("k", 2) is None  # the finished request's ghost still counts
    faults.release(held, "abandoned", streamed=True)  # the key is idle: the ghost goes too
    assert limiter.in_flight("k") == 0 and faults.acquire("k", 2) is not None


def test_only_an_abandoned_non_streamed_request_leaks_under_leak_abandoned() -> None:
    limiter = ConcurrencyLimiter(3)
    faults = SlotFaults(FaultPlan(Fault.LEAK_ABANDONED, 0), limiter, SlotLedger())
    slots = [faults.acquire("k", 3) for _ in range(3)]
    assert all(s is not None for s in slots)
    faults.release(slots[0], "abandoned", streamed=True)  # type: ignore[arg-type]
    faults.release(slots[1], "abandoned", streamed=False)  # type: ignore[arg-type]
    assert faults.acquire("k", 3) is not None  # the streamed one's slot came back
    assert faults.acquire("k", 3) is None  # the other is a ghost
    # Ghosts belong to the server (its ledger), not to one request's fault.
    assert SlotFaults(FaultPlan(Fault.NO_DONE, 0), limiter, faults.ledger).acquire("k", 3) is None


def test_refusals_leak_from_the_nth_in_a_row_and_a_release_resets_the_run() -> None:
    limiter = ConcurrencyLimiter(1)
    faults = SlotFaults(FaultPlan(Fault.REJECT_LEAK, 3), limiter, SlotLedger())
    first = faults.acquire("k", 1)
    assert first is not None
    assert [faults.acquire("k", 1) for _ in range(2)] == [None, None]
    assert faults.ledger.ghosts.get("k", 0) == 0
    assert faults.acquire("k", 1) is None
    assert faults.ledger.ghosts["k"] == 1


def test_a_shared_limit_counts_every_key_together() -> None:
    faults = SlotFaults(FaultPlan(Fault.SHARED_LIMIT, 0), ConcurrencyLimiter(1), SlotLedger())
    assert faults.key_name("first") == faults.key_name("second")
    assert SlotFaults(FaultPlan(Fault.NO_DONE, 0), ConcurrencyLimiter(1), SlotLedger()).key_name("first") == "first"
