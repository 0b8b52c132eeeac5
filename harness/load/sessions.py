"""The session workload of `harness bench`: each arrival of a step's loop plays one conversation to its end.

In a closed loop (`--concurrency N`) each of the N users runs sessions back to back; in an open loop
(`--session-rate R`) each arrival of the pacer starts one, its first turn written by the pacer at its due time like
any open-loop request, its later turns sent by the session's own task. A turn after the first waits its think time
(`Script.think_s`) after the turn before it ended and is due when its user, done thinking, takes it up — as a
closed loop's request is due when its user takes it up — so its record's schedule less the previous turn's end is
the think time it really had (the drawn one, and the event loop's lateness in waking: about a millisecond);
`harness.analysis.traffic` reads it from the records.
Turns are recorded with their session, index, the history they carried and the shared prefix they start with;
`--session-header NAME` sends each turn with `NAME: <run id>-<session>`, for routers that keep a session on one
replica.

**A failed or throttled turn.** A turn is sent like any request: with `--on-429 retry` its 429s are retried as
`Retry-After` says, the wait counted as throttling. A turn that still failed (an error, or a 429 not retried) ends
its session: every later turn would carry an answer that never came. Its record keeps the error, and the session
counts as stopped (`traffic.sessions.stopped` in the summary). Otherwise a session that started is played to its
end, past its step's duration if need be (`--requests` counts sessions); once the run halts (the stop rule), no
further turn is sent.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from harness.client.request import ClientConfig
from harness.load.conversation import Conversation, Scripts, mark_turn
from harness.load.runner import Due, Runner
from harness.records.record import Record
from schemas import ChatFamily


class Sessions:
    """Plays session n's script (`Scripts.script`) at the n-th arrival of the run."""

    def __init__(
        self, scripts: Scripts, config: ClientConfig, family: ChatFamily | None, exact_lengths: bool, run_id: str
    ) -> None:
        if config.endpoint == "completion" and family is None:
            raise ValueError("completion mode needs the model's chat-template family to format conversations")
        self.scripts = scripts
        self.config = config
        self.family = family
        self.exact_lengths = exact_lengths
        self.run_id = run_id
        self._numbers = itertools.count()

    async def fire(self, runner: Runner, due: Due) -> None:
        number = next(self._numbers)
        script = self.scripts.script(number)
        conversation = Conversation(script)
        header = self.scripts.spec.header
        headers = {header: f"{self.run_id}-{number}"} if header else None
        due_ns = due.scheduled_ns
        previous: Record | None = None
        for turn in range(script.turns):
            if previous is not None:
                ended = runner.run.origin_ns + (previous.end_ns or 0)
                await _until(ended + round(script.think_s[turn] * 1e9))
                due_ns = time.perf_counter_ns()
            if runner.halted:
                return
            # A session's turns are warm-up if it started in warm-up.
            record = runner.record(due.plan, due_ns, due.warm, due.user)
            mark_turn(record, number, script, turn, previous)
            body = conversation.body(turn, self.config, self.family, self.exact_lengths)
            text: list[str] = []
            await runner.send(record, body, due.release if turn == 0 else None, headers=headers, text=text)
            if record.error_kind is not None:
                return  # the rule above: the session stops at a turn that failed
            conversation.answered(turn, "".join(text))
            previous = record


async def _until(due_ns: int) -> None:
    delay_s = (due_ns - time.perf_counter_ns()) / 1e9
    if delay_s > 0:
        await asyncio.sleep(delay_s)
