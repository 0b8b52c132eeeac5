"""`launch_reference_server`: the server it starts takes each request's arrival from the kernel unless told not to."""

from __future__ import annotations

from harness.target.launch import launch_reference_server
from tests.integration.held_up import request_while_stopped

SLACK_NS = 1_000_000  # the kernel's wall-clock stamp converted to the monotonic clock: µs apart; this is generous


def test_a_launched_server_s_trace_starts_when_the_request_reached_its_socket() -> None:
    with launch_reference_server(keys=1, startup_timeout_s=120) as server:
        held = request_while_stopped(server)
    assert held.status == 200 and held.trace["received_by"] == "kernel"
    assert held.before_ns - SLACK_NS <= held.trace["received_ns"] < held.resumed_ns


def test_on_uvloop_a_launched_server_s_trace_starts_when_its_loop_read_the_request() -> None:
    with launch_reference_server(keys=1, startup_timeout_s=120, event_loop="uvloop") as server:
        held = request_while_stopped(server)
    assert held.status == 200 and held.trace["received_by"] == "loop"
    assert held.trace["received_ns"] > held.resumed_ns
