"""Every use of aiohttp's private attributes, in one place, each with the reason it is needed.

The client times a response's reads in the connection's protocol, before aiohttp's body reader sees them, and
holds a request's bytes on its connection until the pacer writes them. aiohttp offers no public hook for either, so
a few of its internals are read or set here, and only here. `pyproject.toml` bounds aiohttp's version to the
releases these were checked against; `missing()` names any that an upgrade took away, and a unit test calls it, so
an upgrade that breaks the timing fails loudly by name instead of quietly stamping times late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp.client_proto import ResponseHandler

# (owner, attribute, why): what `missing()` checks on real aiohttp objects.
ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    (
        "ResponseHandler",
        "_payload",
        "the body reader of the response being read, set as its headers are parsed: the protocol notes each read's "
        "time against it before any task reads the body",
    ),
    (
        "ResponseHandler",
        "_reading_paused",
        "reads paused for back-pressure: bytes read after a pause may have waited unwatched, and a resume with "
        "nothing paused must not feed the parser an empty read",
    ),
    (
        "ResponseHandler",
        "_loop",
        "the loop the protocol runs on: the held transport hands the pacer thread's result back to it",
    ),
    (
        "StreamReader",
        "_protocol",
        "the connection protocol a response's body reader belongs to: which of our protocols timed its reads",
    ),
    (
        "TCPConnector",
        "_factory",
        "the factory of connection protocols (stable since aiohttp 3.0): ours time every read",
    ),
    ("TCPConnector", "_loop", "the connector's loop, for the protocols it makes"),
)


def payload(protocol: ResponseHandler) -> aiohttp.StreamReader | None:
    return protocol._payload


def reading_paused(protocol: ResponseHandler) -> bool:
    # `_buffer_paused` is new in aiohttp 3.14 (the body reader's own back-pressure); older releases lack it.
    return bool(protocol._reading_paused or getattr(protocol, "_buffer_paused", False))


def protocol_loop(protocol: ResponseHandler) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = protocol._loop
    return loop


def reader_protocol(reader: aiohttp.StreamReader) -> object | None:
    return getattr(reader, "_protocol", None)


def connector_loop(connector: aiohttp.TCPConnector) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = connector._loop
    return loop


def use_protocols(connector: aiohttp.TCPConnector, factory: Callable[[], ResponseHandler]) -> None:
    connector._factory = factory  # type: ignore[assignment]


def missing() -> list[str]:
    """The attributes above that this aiohttp does not have, as `Owner.attribute` (empty when all are there)."""
    loop = asyncio.new_event_loop()
    try:
        protocol = ResponseHandler(loop)
        reader = aiohttp.StreamReader(protocol, 2**16, loop=loop)
        connector = aiohttp.TCPConnector(loop=loop)
        try:
            owners = {"ResponseHandler": protocol, "StreamReader": reader, "TCPConnector": connector}
            return [f"{owner}.{name}" for owner, name, _ in ATTRIBUTES if not hasattr(owners[owner], name)]
        finally:
            loop.run_until_complete(connector.close())
    finally:
        loop.close()
