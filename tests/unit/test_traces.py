from __future__ import annotations

import time

from reference_server.traces import TraceStore, arrival


class _Connection:
    last_read_ns = 12_345
    last_read_by = "kernel"


def test_arrival_is_the_connection_s_last_read_with_whose_clock_took_it() -> None:
    assert arrival(_Connection()) == (12_345, "kernel")
    by_loop = _Connection()
    by_loop.last_read_by = "loop"
    assert arrival(by_loop) == (12_345, "loop")


def test_arrival_is_now_by_the_loop_for_a_connection_that_does_not_say() -> None:
    before = time.perf_counter_ns()
    now, by = arrival(object())
    assert before <= now <= time.perf_counter_ns() and by == "loop"
    unread = _Connection()
    unread.last_read_ns = 0  # never read: its "kernel" is stale, not this request's
    now, by = arrival(unread)
    assert before <= now <= time.perf_counter_ns() and by == "loop"


def test_a_trace_says_whose_clock_took_its_arrival() -> None:
    store = TraceStore()
    store.start("a", 10, "kernel")
    store.start("b", 20)
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert (a.as_dict()["received_ns"], a.as_dict()["received_by"]) == (10, "kernel")
    assert (b.as_dict()["received_ns"], b.as_dict()["received_by"]) == (20, "loop")
