"""The limiter faults of the reference server: a shared counter, and ghost slots that last while a key is busy."""

from __future__ import annotations

from reference_server.faults import NO_FAULT, Fault, FaultyLimiter, SlotLedger, parse
from reference_server.limiter import ConcurrencyLimiter


def test_a_finished_request_keeps_its_slot_only_while_others_are_in_flight() -> None:
    limiter = ConcurrencyLimiter(2)
    faulty = FaultyLimiter(Fault.LATE_RELEASE, 0, limiter, SlotLedger())
    held = faulty.try_acquire("k", 2)
    done = faulty.try_acquire("k", 2)
    assert held is not None and done is not None
    faulty.release(done, "finished", streamed=True)
    assert faulty.try_acquire("k", 2) is None  # the finished request's ghost still counts
    faulty.release(held, "abandoned", streamed=True)  # the key is idle: the ghost goes too
    assert limiter.in_flight("k") == 0 and faulty.try_acquire("k", 2) is not None


def test_only_an_abandoned_non_streamed_request_leaks_under_leak_abandoned() -> None:
    limiter = ConcurrencyLimiter(3)
    faulty = FaultyLimiter(Fault.LEAK_ABANDONED, 0, limiter, SlotLedger())
    slots = [faulty.try_acquire("k", 3) for _ in range(3)]
    assert all(s is not None for s in slots)
    faulty.release(slots[0], "abandoned", streamed=True)  # type: ignore[arg-type]
    faulty.release(slots[1], "abandoned", streamed=False)  # type: ignore[arg-type]
    assert faulty.try_acquire("k", 3) is not None  # the streamed one's slot came back
    assert faulty.try_acquire("k", 3) is None  # the other is a ghost
    # Ghosts belong to the server (its ledger), not to one request's fault.
    assert FaultyLimiter(Fault.NO_DONE, 0, limiter, faulty.ledger).try_acquire("k", 3) is None


def test_refusals_leak_from_the_nth_in_a_row_and_a_release_resets_the_run() -> None:
    limiter = ConcurrencyLimiter(1)
    faulty = FaultyLimiter(Fault.REJECT_LEAK, 3, limiter, SlotLedger())
    first = faulty.try_acquire("k", 1)
    assert first is not None
    assert [faulty.try_acquire("k", 1) for _ in range(2)] == [None, None]
    assert faulty.ledger.ghosts.get("k", 0) == 0
    assert faulty.try_acquire("k", 1) is None
    assert faulty.ledger.ghosts["k"] == 1


def test_a_shared_limit_counts_every_key_together() -> None:
    limiter = ConcurrencyLimiter(1)
    shared = FaultyLimiter(Fault.SHARED_LIMIT, 0, limiter, SlotLedger())
    assert shared.try_acquire("first") is not None
    assert shared.try_acquire("second") is None  # the first key's request holds the one counter
    assert shared.in_flight("second") == 1
    separate = FaultyLimiter(Fault.NO_DONE, 0, ConcurrencyLimiter(1), SlotLedger())
    assert separate.try_acquire("first") is not None and separate.try_acquire("second") is not None


def test_the_limit_defaults_to_the_limiters_and_slots_report_it_less_the_ghosts() -> None:
    limiter = ConcurrencyLimiter(3)
    faulty = FaultyLimiter(Fault.LATE_RELEASE, 0, limiter, SlotLedger())
    assert faulty.default_limit == 3
    held, done = faulty.try_acquire("k"), faulty.try_acquire("k")
    assert held is not None and done is not None and (held.limit, held.remaining) == (3, 2)
    faulty.release(done)  # finished, by default
    third = faulty.try_acquire("k")
    assert third is not None and (third.limit, third.remaining) == (2, 0)
    assert faulty.snapshot() == limiter.snapshot() == {"k": 2}


def test_a_request_with_any_fault_takes_its_slot_through_the_ledger_and_one_without_does_not() -> None:
    limiter, ledger = ConcurrencyLimiter(2), SlotLedger()
    assert NO_FAULT.limiter(limiter, ledger) is limiter
    faulty = parse("wrong_usage").limiter(limiter, ledger)
    assert isinstance(faulty, FaultyLimiter) and faulty.limiter is limiter and faulty.ledger is ledger
