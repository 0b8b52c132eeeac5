"""The early-stop rule: fed finished requests one by one, it trips exactly when the failed share of the latest
ones passes the bound, and not before the run has seen enough of them."""

from __future__ import annotations

import argparse

import pytest

from harness.load.stop_rule import StopRule, max_error_rate
from harness.records.record import ErrorKind, Record


def outcome(kind: ErrorKind | None, detail: str = "") -> Record:
    record = Record()
    if kind is not None:
        record.fail(kind, detail)
    return record


def feed(rule: StopRule, kinds: list[ErrorKind | None]) -> list[str | None]:
    return [rule.observe(outcome(k, f"{k} detail")) for k in kinds]


def test_a_run_that_fails_from_the_start_stops_at_the_twentieth_request_and_says_why() -> None:
    rule = StopRule()
    reasons = feed(rule, ["http_4xx"] * 25)
    assert reasons[:19] == [None] * 19  # fewer than 20 finished: no verdict yet
    assert reasons[19] == "20 of the last 20 requests failed (http_4xx: http_4xx detail)"
    assert reasons[20:] == [reasons[19]] * 5  # once tripped, it stays tripped with the first reason
    assert rule.finished == 25


def test_the_share_must_exceed_the_bound_over_the_last_fifty() -> None:
    rule = StopRule(0.5)
    # Alternating: exactly half failed, which does not exceed 0.5, however long it goes on.
    assert feed(rule, [None, "timeout"] * 50) == [None] * 100
    # The window is the last 50, 25 of them failed; a failure pushing out a success makes it 26.
    assert rule.observe(outcome("timeout", "slow")) == "26 of the last 50 requests failed (timeout: slow)"


def test_old_failures_leave_the_window() -> None:
    rule = StopRule(0.5)
    assert feed(rule, [None] * 30 + ["disconnect"] * 25 + [None] * 60) == [None] * 115
    # The 25 failures all lie more than 50 requests back: the window holds 50 successes.
    assert feed(rule, ["disconnect"] * 25) == [None] * 25
    assert rule.observe(outcome("disconnect", "reset")) == "26 of the last 50 requests failed (disconnect: reset)"


def test_429s_are_not_failures_and_the_most_common_kind_is_named() -> None:
    assert feed(StopRule(0.5), ["rate_limited"] * 100) == [None] * 100
    # Never more failures than 429s so far: the 429s count as finished, not as failed, so the rule holds.
    assert feed(StopRule(0.5), ["rate_limited", "http_5xx"] * 30) == [None] * 60
    mixed = feed(StopRule(0.5), ["protocol_error"] * 5 + ["http_5xx"] * 6 + [None] * 9)
    assert mixed[-1] == "11 of the last 20 requests failed (http_5xx: http_5xx detail)"


def test_a_bound_of_one_never_stops() -> None:
    assert feed(StopRule(1.0), ["connect"] * 200) == [None] * 200


def test_the_option_takes_shares_in_zero_to_one() -> None:
    assert max_error_rate("0.25") == 0.25
    assert max_error_rate("1") == 1.0
    for bad in ("0", "-0.1", "1.5", "half"):
        with pytest.raises(argparse.ArgumentTypeError):
            max_error_rate(bad)
    with pytest.raises(ValueError, match="at most 1"):
        StopRule(0.0)
