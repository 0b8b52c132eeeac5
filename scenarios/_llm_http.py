"""Every use of geventhttpclient's and Locust's private names, in one place, each with the reason it is needed.

The scenarios read a streamed body straight from its connection, one `recv` at a time, stamping each read when it
returns (`_llm_user`): neither library has a public way to read a response's socket as it arrives, and
`iter_content(n)` would wait for n bytes and stamp late. `pyproject.toml` bounds both libraries to the releases
these were checked against; `missing()` names any name an upgrade took away, and a unit test calls it, so an
upgrade that breaks the timing fails loudly by name.
"""

from __future__ import annotations

import importlib
from typing import Any

from gevent.socket import socket
from geventhttpclient.response import HTTPSocketResponse

# geventhttpclient raises it from its C parser's module; the public package does not re-export it.
HTTPParseError: type[Exception] = importlib.import_module("geventhttpclient._parser").HTTPParseError

# (owner, attribute, why): what `missing()` checks on the real classes.
ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("FastResponse", "_response", "Locust's response keeps geventhttpclient's, whose connection the body is read from"),
    ("HTTPSocketResponse", "_sock", "the connection a response's body is read from, one recv at a time"),
    ("HTTPSocketResponse", "_body_buffer", "the body bytes the parser decoded (the chunked framing taken off)"),
)


def socket_response(response: Any) -> HTTPSocketResponse:
    """geventhttpclient's response behind a Locust `FastResponse`."""
    raw: HTTPSocketResponse = response._response
    return raw


def connection(raw: HTTPSocketResponse) -> socket | None:
    """The response's connection, None once it was released or closed."""
    sock: socket | None = raw._sock
    return sock


def body_buffer(raw: HTTPSocketResponse) -> bytearray:
    """The decoded body bytes not yet taken: the caller empties it as it takes them."""
    buffer: bytearray = raw._body_buffer
    return buffer


def missing() -> list[str]:
    """The attributes above that these releases do not have, as `Owner.attribute` (empty when all are there)."""
    from locust.contrib.fasthttp import FastResponse

    owners: dict[str, Any] = {"FastResponse": FastResponse, "HTTPSocketResponse": _bare_response()}
    return [f"{owner}.{name}" for owner, name, _ in ATTRIBUTES if not hasattr(owners[owner], name)]


def _bare_response() -> HTTPSocketResponse:
    """A response parsed from a canned answer, so that instance attributes can be looked for."""
    import gevent.socket

    left, right = gevent.socket.socketpair()
    try:
        right.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        return HTTPSocketResponse(left)
    finally:
        right.close()
