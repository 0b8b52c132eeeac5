"""The processes a benchmark starts: each in its own process group, from the repository's root, waited for until it
answers `/health`, and stopped with its children; a `Group` stops whatever is still running, whatever the exit."""

from __future__ import annotations

import atexit
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from benchmarks.support import ROOT

HOST = "127.0.0.1"


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """`argv` run on one CPU (`taskset -c`), or as it is when `cpu` is None."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)


def stop(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM to the process's group, SIGKILL when it has not exited after `grace_s`."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_healthy(
    process: subprocess.Popen[bytes],
    log_path: Path,
    *,
    port: int = 0,
    port_from_log: re.Pattern[str] | None = None,
    timeout_s: float = 90.0,
    host: str = HOST,
) -> int:
    """Wait until the server answers `GET /health` with 200 and return its port; with `port_from_log` (a pattern
    whose first group is the port), learn the port from the ready line the server writes to its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_tail(log_path)}")
        if port_from_log is not None and not port:
            match = port_from_log.search(log_path.read_text(errors="replace"))
            port = int(match.group(1)) if match else 0
        if port and _healthy(host, port):
            return port
        time.sleep(0.1)
    raise RuntimeError(f"server not ready within {timeout_s:.0f} s:\n{log_tail(log_path)}")


def _healthy(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def tail(text: str | bytes | None, lines: int = 12) -> str:
    """The last lines of a process's output (what an error message quotes)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return tail(path.read_bytes(), lines)
    except OSError:
        return ""


def tool_version(argv: Sequence[str]) -> str:
    """The first line a tool prints for its version (`argv` asks for it), "?" when it cannot tell."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


class Group:
    """The processes started for one run. Leaving a `with Group()` block stops those still running; so does the
    exit of the interpreter (SIGTERM and SIGINT included) once `stop_on_exit` was called."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], *, log_path: Path | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`argv` in a session of its own (so that it and its children stop together), its output to `log_path`."""
        sink = log_path.open("wb") if log_path is not None else None
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=sink if sink is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=ROOT,
                start_new_session=True,
            )
        finally:
            if sink is not None:
                sink.close()
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
        stop(process, grace_s)
        if process in self._running:
            self._running.remove(process)

    def stop_all(self, grace_s: float = 5.0, keep: Collection[subprocess.Popen[bytes]] = ()) -> None:
        for process in list(self._running):
            if process not in keep:
                self.stop(process, grace_s)

    def stop_on_exit(self, grace_s: float = 2.0) -> None:
        atexit.register(self.stop_all, grace_s)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.stop_all(grace_s)
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def __enter__(self) -> Group:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop_all()
