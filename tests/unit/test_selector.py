"""The timed selector: whether an iteration began with every socket empty, and its wake-up, on real sockets."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time

from harness.client import selector
from harness.client.selector import TimedSelector


def test_a_wait_that_slept_began_with_every_socket_empty_and_woke_at_the_first_arrival() -> None:
    ours, theirs = socket.socketpair()
    sel = TimedSelector()
    try:
        sel.register(ours, selectors.EVENT_READ)
        written: list[int] = []

        def write_later() -> None:
            time.sleep(0.05)
            written.append(time.perf_counter_ns())
            theirs.sendall(b"one two")

        writer = threading.Thread(target=write_later)
        writer.start()
        ready = sel.select(5)
        writer.join()
        assert [key.fileobj for key, _ in ready] == [ours]
        assert sel.slept and sel.entered_ns < written[0] <= sel.returned_ns
        assert (sel.after_ns, sel.woke_ns) == (sel.entered_ns, sel.returned_ns)
        slept = (sel.entered_ns, sel.returned_ns)
        # The bytes were not read: the next select finds them at once, and its reads are known by the one before.
        assert sel.select(5) and not sel.slept
        assert (sel.after_ns, sel.woke_ns) == slept
        # A select that did not sleep says only when it began to the iteration after it.
        began = sel.entered_ns
        assert sel.select(5) and not sel.slept and (sel.after_ns, sel.woke_ns) == (began, None)
    finally:
        sel.close()
        ours.close()
        theirs.close()


def test_the_wake_up_latency_is_the_wake_less_the_earliest_kernel_stamp_of_its_reads() -> None:
    ours, theirs = socket.socketpair()
    sel = TimedSelector()
    try:
        sel.register(ours, selectors.EVENT_READ)
        threading.Timer(0.02, theirs.sendall, args=(b"x",)).start()
        sel.select(5)
        sel.arrived(sel.returned_ns - 300_000)  # a read of this iteration the kernel stamped 0.3 ms before the wake
        sel.arrived(sel.returned_ns - 100_000)
        ours.recv(16)
        sel.select(0)  # the next iteration: the last one's wake-up is measured
        assert sel.take_wake_max() == 300_000
        assert sel.take_wake_max() == 0  # taken
    finally:
        sel.close()
        ours.close()
        theirs.close()


def test_the_loop_made_for_the_client_has_a_timed_selector_it_can_be_found_by() -> None:
    loop = selector.new_event_loop()
    try:
        found = selector.of(loop)
        assert isinstance(found, TimedSelector)
        assert loop.run_until_complete(asyncio.sleep(0.01, "ran")) == "ran"
        assert found.returned_ns > 0
    finally:
        loop.close()
    other = asyncio.new_event_loop()
    try:
        assert selector.of(other) is None
    finally:
        other.close()
