from __future__ import annotations

import time

from reference_server.traces import arrival_ns


class _Connection:
    last_read_ns = 12_345


def test_arrival_is_the_connection_s_last_read() -> None:
    assert arrival_ns(_Connection()) == 12_345


def test_arrival_is_now_for_a_connection_that_does_not_say() -> None:
    before = time.perf_counter_ns()
    assert before <= arrival_ns(object()) <= time.perf_counter_ns()
    unread = _Connection()
    unread.last_read_ns = 0
    assert before <= arrival_ns(unread) <= time.perf_counter_ns()
