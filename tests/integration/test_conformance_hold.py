"""The limit checks' held streams under the openai profile: `ignore_eos` is sent only to a target that takes it,
so a strict server that refuses fields OpenAI does not define still has its limit checked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.conformance.contract import Contract, Settings
from harness.conformance.endpoint import Api
from harness.conformance.slots import Slots
from harness.target.endpoint import Target
from harness.target.launch import launch_reference_server

from .strict_server import KEY, MODEL, Strict, strict_server


@pytest.fixture(scope="module")
def strict() -> Iterator[Strict]:
    with strict_server() as server:
        yield server


def held(target: Target) -> tuple[bool | None, int, list[str]]:
    """Open the limit checks' slots once: what was found out, the held stream's status and its body's fields."""
    settings = Settings(target)
    contract = Contract(settings)
    api = Api(settings)

    async def scenario() -> tuple[int, list[str]]:
        async with Slots(api.endpoint, contract, settings) as slots:
            body = contract.hold_body()
            stream = await api.endpoint.hold(body, slots.authorization)
            slots.held.append(stream)
            return stream.status, sorted(body)

    try:
        status, fields = api.run(scenario())
    finally:
        api.close()
    return contract.ignore_eos, status, fields


def test_a_strict_server_gets_held_streams_without_ignore_eos(strict: Strict) -> None:
    before = len(strict.refused)
    found, status, fields = held(Target.of(strict.base_url, [KEY], MODEL, profile="openai"))
    assert found is False
    assert status == 200 and "ignore_eos" not in fields
    assert strict.refused[before:] == [["ignore_eos"]]  # the one probe that found it out


def test_a_server_that_takes_ignore_eos_gets_it_under_the_openai_profile() -> None:
    with launch_reference_server(profile="openai", keys=1) as server:
        found, status, fields = held(server.target)
    assert found is True
    assert status == 200 and "ignore_eos" in fields
