"""What a process and the machine use (`benchmarks.support.usage`), read from /proc for this very process."""

from __future__ import annotations

import os
import socket

from benchmarks.support.usage import busy_seconds, cpu_seconds, rss_kib, socket_count, tcp_states


def test_cpu_seconds_and_memory_of_this_process() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(200_000))
    assert cpu_seconds(os.getpid()) >= before > 0
    assert busy_seconds() > 0
    assert rss_kib(os.getpid()) > 1024  # an interpreter with numpy loaded holds more than a MiB


def test_sockets_held_and_the_tcp_states_of_a_port() -> None:
    held = socket_count(os.getpid())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert socket_count(os.getpid()) == held + 1
        assert tcp_states(port)["LISTEN"] == 1
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            with accepted:
                assert tcp_states(port) == {"LISTEN": 1, "ESTABLISHED": 1}  # the server's side only
    assert not tcp_states(port).get("LISTEN")
