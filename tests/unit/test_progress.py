from __future__ import annotations

import asyncio
import io

from harness.load.progress import Progress
from harness.records.record import Record


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_counts_done_in_flight_429s_errors_and_the_median_ttft() -> None:
    progress = Progress(enabled=True, stream=io.StringIO())
    progress.step("step 1: concurrency=4")
    for _ in range(4):
        progress.sent()
    progress.finished(Record(sent_ns=0, first_token_ns=10_000_000))
    progress.finished(Record(sent_ns=0, first_token_ns=30_000_000))
    progress.finished(Record(error_kind="rate_limited"))
    assert progress.line() == "[step 1: concurrency=4] done 3  in flight 1  429s 1  errors 0  p50 TTFT 20.0 ms"


def test_wanted_only_on_a_terminal_outside_ci() -> None:
    assert Progress.wanted(Tty(), ci=False)
    assert not Progress.wanted(Tty(), ci=True)
    assert not Progress.wanted(io.StringIO(), ci=False)


async def test_a_disabled_display_writes_nothing_and_an_enabled_one_ends_its_line() -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    for stream, enabled in ((quiet, False), (loud, True)):
        progress = Progress(enabled=enabled, stream=stream, interval_s=0.01)
        progress.step("s")
        progress.start()
        await asyncio.sleep(0.03)
        await progress.stop()
    assert quiet.getvalue() == ""
    assert loud.getvalue().startswith("\r[s] done 0") and loud.getvalue().endswith("\n")
