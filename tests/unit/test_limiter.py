from __future__ import annotations

import pytest

from reference_server.limiter import ConcurrencyLimiter


def test_slots_up_to_the_limit_then_none_and_rejections_take_nothing() -> None:
    limiter = ConcurrencyLimiter(2)
    first, second = limiter.try_acquire("k"), limiter.try_acquire("k")
    assert first is not None and second is not None
    assert (first.remaining, second.remaining) == (1, 0)
    assert limiter.try_acquire("k") is None
    assert limiter.in_flight("k") == 2
    limiter.release(first)
    assert limiter.try_acquire("k") is not None
    assert limiter.snapshot() == {"k": 2}


def test_keys_are_isolated_and_per_key_limits_override_the_default() -> None:
    limiter = ConcurrencyLimiter(1)
    assert limiter.try_acquire("a") is not None
    assert limiter.try_acquire("a") is None
    assert limiter.try_acquire("b") is not None
    assert limiter.try_acquire("c", limit=3) is not None
    assert limiter.snapshot() == {"a": 1, "b": 1, "c": 1}


def test_a_double_release_is_a_bug_that_is_caught() -> None:
    limiter = ConcurrencyLimiter(1)
    slot = limiter.try_acquire("a")
    assert slot is not None
    limiter.release(slot)
    with pytest.raises(RuntimeError, match="twice"):
        limiter.release(slot)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimiter(0)
