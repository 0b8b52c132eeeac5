"""Taking a key's concurrency slots on purpose: streams held open, quick probes, and a clean-up that never misses.

A server notices a closed connection a moment after the client closes it, so whenever the limit checks need slots
they retry refused requests for up to `release_timeout_s` instead of assuming the slot is already back.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

from harness.conformance.contract import Contract, Settings
from harness.conformance.endpoint import Endpoint, Held, Reply

POLL_S = 0.02


class Slots:
    """Streams held open on one key. Use as `async with`: every stream and probe is closed on the way out."""

    def __init__(self, endpoint: Endpoint, contract: Contract, settings: Settings, key: str | None = None) -> None:
        self.endpoint = endpoint
        self.contract = contract
        self.limit = settings.target.concurrency_limit
        self.release_timeout_s = settings.release_timeout_s
        self.authorization = endpoint.bearer(key or settings.target.api_key)
        self.held: list[Held] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Slots:
        if self.contract.ignore_eos is None:  # before any slot is taken, so that the probes find the key free
            self.contract.ignore_eos = await self._takes_ignore_eos()
        return self

    async def _takes_ignore_eos(self) -> bool | None:
        """Whether the target takes `ignore_eos`; None when neither the request with it nor without it worked."""
        body = self.contract.quick_body()
        with_it = await self.endpoint.post("/completions", {**body, "ignore_eos": True}, self.authorization)
        if with_it.status == 200:
            return True
        return False if (await self.endpoint.post("/completions", body, self.authorization)).status == 200 else None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for held in self.held:
            held.close()
        self.held.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(POLL_S)  # the server notices the closed connections before the next check begins

    def explain(self, message: str) -> str:
        """`message`, and whether some held stream ended on its own (which spoils what the check saw)."""
        ended = sum(h.ended() for h in self.held)
        if ended:
            why = (
                "the endpoint must honour ignore_eos with no max_tokens"
                if self.contract.ignore_eos
                else "the target refuses ignore_eos, so a held stream ends where the model stops"
            )
            message += (
                f" ({ended} of the {len(self.held)} held streams had already ended: the server finished them, so "
                f"they no longer held their slots; {why})"
            )
        return message

    async def fill(self, count: int) -> None:
        """Hold streams until `count` are held, retrying refusals until `release_timeout_s` has passed."""
        deadline = time.monotonic() + self.release_timeout_s
        last: Held | None = None
        while len(self.held) < count:
            opened = await asyncio.gather(
                *(
                    self.endpoint.hold(self.contract.hold_body(), self.authorization)
                    for _ in range(count - len(self.held))
                ),
                return_exceptions=True,
            )
            self.held += [h for h in opened if isinstance(h, Held) and h.admitted]
            failure = next((e for e in opened if isinstance(e, BaseException)), None)
            if failure is not None:
                raise failure
            refused = [h for h in opened if isinstance(h, Held) and not h.admitted]
            if any(h.status != 429 for h in refused):
                bad = next(h for h in refused if h.status != 429)
                raise AssertionError(f"opening a stream failed: HTTP {bad.status}: {bad.body[:300]!r}")
            last = refused[-1] if refused else last
            if len(self.held) < count:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        self.explain(
                            f"only {len(self.held)} concurrent streams of {count} were admitted within "
                            f"{self.release_timeout_s:g} s (limit {self.limit}); the rest got HTTP 429: "
                            f"{last.body[:200] if last else b''!r}"
                        )
                    )
                await asyncio.sleep(POLL_S)

    async def quick(self, authorization: str | None = None) -> Reply:
        """A non-streamed one-token request: if admitted, it is over at once."""
        return await self.endpoint.post("/completions", self.contract.quick_body(), authorization or self.authorization)

    async def expect_full(self, when: str) -> Reply:
        """One request more than the key's slots: it must be refused with 429."""
        reply = await self.quick()
        assert reply.status == 429, self.explain(
            f"{when}, with {len(self.held)} requests in flight and a limit of {self.limit}, one more request "
            f"was answered {reply.describe()} instead of 429"
        )
        return reply

    async def take_back(self, when: str) -> None:
        """Hold one stream more, waiting (within `release_timeout_s`) for a slot that must have come back."""
        try:
            await self.fill(len(self.held) + 1)
        except AssertionError as exc:
            raise AssertionError(f"{when}, its slot did not come back: {exc}") from None

    def close_one(self) -> None:
        self.held.pop().close()

    def start(self, body: dict[str, Any]) -> asyncio.Task[Reply]:
        """Send a non-streamed request in the background; leaving the block abandons it."""
        task = asyncio.create_task(self.endpoint.post("/completions", body, self.authorization))
        self._tasks.add(task)
        return task

    async def abandon(self, task: asyncio.Task[Reply]) -> None:
        """Go away from a request before its answer: the connection is closed under it."""
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._tasks.discard(task)
