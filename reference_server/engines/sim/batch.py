"""The continuous-batching latency model: a bounded running set, a FIFO waiting queue, and step times.

TTFT = queueing + `ttft_ms` + `prefill_ms_per_token` × prompt tokens; each later token comes one inter-token
latency after the previous one, and that latency grows with the number of running sequences, as decode steps
do on a real server.
"""

from __future__ import annotations

import asyncio
from collections import deque

from reference_server.config import SimOptions


class BatchModel:
    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def enter(self) -> None:
        """Join the running batch, queueing first when it is full."""
        if self.running < self.options.max_num_seqs and not self._waiting:
            self.running += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter  # the slot is handed over by `leave`, so `running` already counts us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a slot in the same instant we were cancelled: give it on
            else:
                self._waiting.remove(waiter)
            raise

    def leave(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1

    def first_token_delay_s(self, prompt_tokens: int) -> float:
        return (self.options.ttft_ms + self.options.prefill_ms_per_token * prompt_tokens) / 1000.0

    def inter_token_delay_s(self) -> float:
        o = self.options
        return o.itl_ms * (1.0 + o.itl_batch_factor * max(self.running - 1, 0)) / 1000.0
