"""The spec's rate limit: at most N requests in flight per key (30 by default); the next one is refused with 429.

Each check starts by holding streams open (read up to their first chunk, never further, so they stay in flight), and
closes every stream it opened when it ends, pass or fail.
"""

from __future__ import annotations

import asyncio
from email.utils import parsedate_to_datetime

import pytest

from harness.conformance.contract import Contract, Settings
from harness.conformance.endpoint import Api, Reply
from harness.conformance.slots import Slots

__all__ = [
    "test_limit_disconnect_frees_slot",
    "test_limit_finished_request_frees_slot",
    "test_limit_is_per_key",
    "test_limit_rejections_take_no_slot",
    "test_limit_rejects_beyond_n",
]


def _retry_after_problem(value: str | None) -> str | None:
    if value is None:
        return "the 429 has no Retry-After header"
    if value.strip().isdigit():
        return None
    try:
        parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return f"Retry-After {value!r} is neither seconds nor an HTTP date"
    return None


def _assert_rate_limited(reply: Reply, contract: Contract) -> None:
    assert (problem := _retry_after_problem(reply.headers.get("Retry-After"))) is None, problem
    body = reply.json()
    assert not (problems := contract.errors("error", body)), f"the 429 is not in the OpenAI error envelope: {problems}"
    assert body["error"]["code"] == "rate_limit_exceeded", f"the 429's code is {body['error']['code']!r}"


@pytest.mark.limits
def test_limit_rejects_beyond_n(api: Api, contract: Contract, settings: Settings) -> None:
    """N streams are admitted at once; request N+1 is 429 with Retry-After and code `rate_limit_exceeded`."""

    async def scenario() -> None:
        async with Slots(api.endpoint, contract, settings) as slots:
            await slots.fill(slots.limit)
            _assert_rate_limited(await slots.expect_full("at the limit"), contract)

    api.run(scenario())


@pytest.mark.limits
def test_limit_finished_request_frees_slot(api: Api, contract: Contract, settings: Settings) -> None:
    """When one of N requests in flight finishes, the next request is admitted, and only one."""

    async def scenario() -> None:
        async with Slots(api.endpoint, contract, settings) as slots:
            await slots.fill(slots.limit - 1)
            short = await api.endpoint.hold({**contract.hold_body(), "max_tokens": 8}, slots.authorization)
            assert short.admitted, slots.explain(f"the N-th stream was refused: HTTP {short.status} {short.body!r}")
            await short.finish()
            await slots.take_back("after a request finished")
            await slots.expect_full("after the finished request's slot was taken again")

    api.run(scenario())


@pytest.mark.limits
def test_limit_disconnect_frees_slot(api: Api, contract: Contract, settings: Settings) -> None:
    """A client that goes away frees its slot: a held stream it closes, a non-streamed request it abandons."""

    async def closed_stream() -> None:
        async with Slots(api.endpoint, contract, settings) as slots:
            await slots.fill(slots.limit)
            await slots.expect_full("at the limit")
            slots.close_one()
            await slots.take_back("after a client closed its stream")
            await slots.expect_full("after the closed stream's slot was taken again")

    async def abandoned_request() -> None:
        for _ in range(3):
            async with Slots(api.endpoint, contract, settings) as slots:
                long = slots.start({**contract.hold_body(), "stream": False})
                await slots.fill(slots.limit - 1)
                if (await slots.quick()).status == 429 and not long.done():  # the long request has the last slot
                    await slots.abandon(long)
                    await slots.take_back("after a client abandoned its non-streamed request")
                    await slots.expect_full("after the abandoned request's slot was taken again")
                    return
            await asyncio.sleep(0.1)  # the long request was refused or ended: try again from a quiet key
        raise AssertionError("a long non-streamed request could not be put in flight beside N-1 streams (3 attempts)")

    api.run(closed_stream())
    api.run(abandoned_request())


@pytest.mark.limits
def test_limit_is_per_key(api: Api, contract: Contract, settings: Settings) -> None:
    """While the first key is at its limit, the second key is served."""
    second = settings.target.api_key_2
    assert second is not None, "this check needs a second key (--api-key-2)"

    async def scenario() -> None:
        async with Slots(api.endpoint, contract, settings) as slots:
            await slots.fill(slots.limit)
            await slots.expect_full("at the first key's limit")
            reply = await slots.quick(api.endpoint.bearer(second))
            assert reply.status == 200, f"the second key was refused while the first was full: {reply.describe()}"

    api.run(scenario())


@pytest.mark.limits
def test_limit_rejections_take_no_slot(api: Api, contract: Contract, settings: Settings) -> None:
    """After many refused requests the key still has exactly N slots: refusals take none."""

    async def scenario() -> None:
        async with Slots(api.endpoint, contract, settings) as slots:
            await slots.fill(slots.limit)
            storm = await asyncio.gather(*(slots.quick() for _ in range(2 * slots.limit)))
            admitted = [r.describe() for r in storm if r.status != 429]
            assert not admitted, slots.explain(f"{len(admitted)} requests were served beyond the limit: {admitted[:2]}")
            while len(slots.held) > 1:
                slots.close_one()
            try:
                await slots.fill(slots.limit)
            except AssertionError as exc:
                raise AssertionError(f"after {len(storm)} refused requests the key lost slots: {exc}") from None
            await slots.expect_full("after the refusals, with the key full again")

    api.run(scenario())
