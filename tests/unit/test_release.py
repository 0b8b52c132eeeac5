"""A release holds a request's bytes until it is due, then writes them on the opening thread, once."""

from __future__ import annotations

import os
import socket

from harness.client.release import Release


def held(release: Release) -> tuple[socket.socket, list[tuple[str, int]]]:
    """A socketpair whose first end the release now owns (a duplicate of it), and what the release told."""
    ours, peer = socket.socketpair()
    told: list[tuple[str, int]] = []
    accepted = release.hold(os.dup(ours.fileno()), b"POST / HTTP/1.1\r\n\r\n", lambda at: told.append(("stamp", at)),
                            lambda count, at: told.append(("written", count)))  # fmt: skip
    assert accepted
    ours.close()
    return peer, told


def test_held_bytes_are_written_when_the_release_opens_and_only_once() -> None:
    release = Release()
    peer, told = held(release)
    with peer:
        peer.setblocking(False)
        assert not release.is_open
        release.open()
        assert peer.recv(100) == b"POST / HTTP/1.1\r\n\r\n"
        release.open()  # a second opening writes nothing more
        assert [kind for kind, _ in told] == ["stamp", "written"] and told[1][1] == 19
        peer.settimeout(0.05)
        try:
            extra = peer.recv(100)
        except TimeoutError:
            extra = b""
        assert extra == b""  # the release closed its descriptor: the peer sees the end, nothing else


def test_an_open_release_leaves_the_write_to_the_caller() -> None:
    release = Release()
    release.open()
    ours, peer = socket.socketpair()
    with ours, peer:
        fd = os.dup(ours.fileno())
        try:
            assert not release.hold(fd, b"x", lambda at: None, lambda count, at: None)
        finally:
            os.close(fd)  # refused: still the caller's


def test_a_cancelled_release_writes_nothing_and_closes_its_descriptor() -> None:
    release = Release()
    peer, told = held(release)
    with peer:
        release.cancel()
        release.open()
        assert told == []
        assert peer.recv(100) == b""  # the only other end was the release's descriptor, now closed
