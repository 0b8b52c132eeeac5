"""The benchmarks' process helpers (`benchmarks.support.processes`) against real subprocesses."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.support.processes import Group, log_tail, pinned, stop, tail, tool_version, wait_healthy

# Serves GET /health on a port of its choosing and says which in its log, as the benchmarks' servers do.
HEALTH_SERVER = """
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(f"tiny server ready at http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
"""
READY = re.compile(r"tiny server ready at http://[^:]+:(\d+)")


def wait_for_line(log: Path, text: str) -> str:
    """The log once it holds `text` (bounded: the process prints it first thing)."""
    for _ in range(600):
        content = log.read_text() if log.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {log}: {content!r}")


def test_pinned_prefixes_taskset_only_when_a_cpu_is_given() -> None:
    assert pinned(["wrk", "-t1"], 1) == ["taskset", "-c", "1", "wrk", "-t1"]
    assert pinned(("wrk", "-t1"), None) == ["wrk", "-t1"]


def test_a_started_server_is_waited_for_on_the_port_its_log_names_and_stopped(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with Group() as group:
        process = group.start([sys.executable, "-c", HEALTH_SERVER], log_path=log)
        port = wait_healthy(process, log, port_from_log=READY, timeout_s=60)
        assert f"ready at http://127.0.0.1:{port}" in log.read_text()
        assert wait_healthy(process, log, port=port) == port  # a known port needs no log line
        group.stop(process)
        assert process.returncode == -signal.SIGTERM
        group.stop(process)  # stopping a stopped process is a no-op


def test_a_server_that_exits_before_it_answers_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with Group() as group:
        process = group.start([sys.executable, "-c", "print('no model here'); raise SystemExit(3)"], log_path=log)
        with pytest.raises(RuntimeError, match=r"server exited with 3:\nno model here"):
            wait_healthy(process, log, port_from_log=READY, timeout_s=60)


def test_stop_kills_what_ignores_sigterm_and_the_children_of_its_group(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(f'child {child.pid}', flush=True)\n"
        "time.sleep(600)\n"
    )
    with Group() as group:
        process = group.start([sys.executable, "-c", stubborn], log_path=log)
        child = int(re.search(r"child (\d+)", wait_for_line(log, "child "))[1])  # type: ignore[index]
        stop(process, grace_s=0.5)
    assert process.returncode == -signal.SIGKILL
    # The child got SIGTERM with its group: gone, or a zombie until whoever adopted it reaps it. A signal is
    # delivered when the child is next scheduled, which on a busy machine is not at once: wait for it (bounded).
    assert ended(child, within_s=30.0)


def ended(pid: int, within_s: float) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_leaving_the_group_stops_what_still_runs_but_what_is_kept(tmp_path: Path) -> None:
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    with Group() as group:
        kept, other = group.start(sleep), group.start(sleep)
        group.stop_all(keep=[kept])
        assert other.poll() is not None and kept.poll() is None
    assert kept.poll() is not None


def test_tail_and_tool_version(tmp_path: Path) -> None:
    assert tail(b"one\ntwo\nthree\n\n", lines=2) == "two\nthree"
    assert tail(None) == ""
    log = tmp_path / "log"
    log.write_text("\n".join(f"line {i}" for i in range(30)))
    assert log_tail(log, lines=2) == "line 28\nline 29"
    assert log_tail(tmp_path / "missing") == ""
    version = subprocess.run([sys.executable, "--version"], capture_output=True, text=True).stdout.strip()
    assert tool_version([sys.executable, "--version"]) == version
    assert tool_version([str(tmp_path / "no-such-tool"), "--version"]) == "?"
