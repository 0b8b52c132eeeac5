"""Launching servers to measure: the reference server (when no endpoint is given) and vLLM's own, as subprocesses.

The harness talks to servers over HTTP only: the reference server is started as `python -m reference_server`,
never imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.target.endpoint import Target
from schemas import Profile

DEFAULT_MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
EMBEDDED_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
_READY = re.compile(r"reference server ready at (http://\S+)/v1")
# The reference server's `--event-loop`: on asyncio's loop its traces take each request's arrival from the kernel,
# on uvloop (faster) from when the loop read it.
EventLoop = Literal["asyncio", "uvloop"]


@dataclass(slots=True)
class LaunchedServer:
    target: Target
    process: subprocess.Popen[str]
    log_path: Path | None
    log_lines: list[str] = field(default_factory=list)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for servers that cannot report the port they bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def launch_command(
    argv: Sequence[str], health_url: str, *, startup_timeout_s: float = 600.0, log_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start any server command (vLLM's own server, say), wait until `health_url` answers 200, stop it after."""
    sink = log_path.open("wb") if log_path is not None else subprocess.DEVNULL
    process = subprocess.Popen(list(argv), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _answers(health_url):
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with code {process.returncode} before serving")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{health_url} did not answer within {startup_timeout_s:.0f} s")
            time.sleep(0.5)
        yield process
    finally:
        _stop(process)
        if log_path is not None and not isinstance(sink, int):
            sink.close()


@contextlib.contextmanager
def launch_vllm_openai_server(
    model_dir: Path,
    served_model_name: str,
    api_key: str,
    engine_args: Sequence[str] = (),
    *,
    startup_timeout_s: float = 1200.0,
    log_path: Path | None = None,
) -> Iterator[str]:
    """vLLM's own OpenAI server (a peer to compare with) on a free port of 127.0.0.1; yields its root URL."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_model_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-key",
        api_key,
        *engine_args,
    ]
    root = f"http://127.0.0.1:{port}"
    with launch_command(argv, f"{root}/health", startup_timeout_s=startup_timeout_s, log_path=log_path):
        yield root


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def new_key() -> str:
    return "esecret_" + secrets.token_urlsafe(18)


def reference_server_argv(
    engine: str, profile: Profile, concurrency_limit: int, keys: Sequence[str], model: str | None,
    event_loop: EventLoop, extra_args: Sequence[str],
) -> list[str]:  # fmt: skip
    """The command line of `python -m reference_server` on a free port of 127.0.0.1 with these keys."""
    argv = [sys.executable, "-m", "reference_server", "--engine", engine, "--host", "127.0.0.1", "--port", "0"]
    argv += ["--profile", profile, "--concurrency-limit", str(concurrency_limit), "--grace-period", "5"]
    argv += ["--event-loop", event_loop]
    for key in keys:
        argv += ["--api-key", key]
    if model is not None:
        argv += ["--model", model]
    return argv + list(extra_args)


class _ServerLog:
    """Drains a started server's stderr for its whole life (a chatty server would block on a full pipe), keeps its
    lines (and writes them to `log_path`), and finds the line that says where it serves."""

    def __init__(self, process: subprocess.Popen[str], log_path: Path | None, lines: list[str]) -> None:
        self.process = process
        self.log_path = log_path
        self.lines = lines
        self.found: str | None = None
        self.ready = threading.Event()

    def pump(self) -> None:
        assert self.process.stderr is not None
        sink = self.log_path.open("a", encoding="utf-8") if self.log_path is not None else None
        try:
            for line in self.process.stderr:
                self.lines.append(line)
                if sink is not None:
                    sink.write(line)
                    sink.flush()
                if self.found is None and (match := _READY.search(line)):
                    self.found = match.group(1)
                    self.ready.set()
        finally:
            if sink is not None:
                sink.close()
            self.ready.set()

    def wait_ready(self, timeout_s: float) -> str:
        """The root URL the server serves at, once it says so (TimeoutError, or RuntimeError when it exited)."""
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the reference server did not start within {timeout_s:.0f} s")
        if self.found is None:
            tail = "".join(self.lines[-30:])
            raise RuntimeError(f"the reference server exited (code {self.process.wait()}) before serving:\n{tail}")
        return self.found


@contextlib.contextmanager
def launch_reference_server(
    *,
    engine: str = "sim",
    profile: Profile = "anyscale",
    concurrency_limit: int = 30,
    model: str | None = None,
    extra_args: Sequence[str] = (),
    keys: int = 2,
    startup_timeout_s: float = 600.0,
    log_path: Path | None = None,
    event_loop: EventLoop = "asyncio",
) -> Iterator[LaunchedServer]:
    """Start `python -m reference_server` on a free port of 127.0.0.1, wait until it serves, stop it after.

    Yields the running server with a Target carrying its URL and the keys it was started with (a second key
    is made so that key isolation can be checked).

    On asyncio's event loop by default, whatever the engine: a launched server is the harness's ground truth, and
    only there does a trace's arrival come from the kernel; on uvloop the server's own lateness in reading a request
    (it shares the cores with the engine and the client) would show as the client's timing error. `uvloop` is for
    runs that race the server's speed against another server's and read no traces. An `--event-loop` in
    `extra_args` comes later and wins.
    """
    api_keys = [new_key() for _ in range(keys)]
    argv = reference_server_argv(engine, profile, concurrency_limit, api_keys, model, event_loop, extra_args)
    env = {k: v for k, v in os.environ.items() if k not in ("ANYSCALE_API_KEY", "REFERENCE_SERVER_API_KEYS")}
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    served = model or (EMBEDDED_MODEL if engine == "vllm" else DEFAULT_MODEL)
    description = f"reference server ({engine}, pid {process.pid})"
    target = Target.of("", api_keys, served, description, profile=profile, concurrency_limit=concurrency_limit)
    launched = LaunchedServer(target, process, log_path)
    log = _ServerLog(process, log_path, launched.log_lines)
    threading.Thread(target=log.pump, name="reference-server-log", daemon=True).start()
    try:
        root = log.wait_ready(startup_timeout_s)
        launched.target = dataclasses.replace(launched.target, base_url=f"{root}/v1")
        yield launched
    finally:
        _stop(process)


def _process_tree(pid: int) -> list[int]:
    """The process and its descendants (Linux /proc; empty elsewhere)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (field 2) may hold spaces; the parent pid is the second field after it.
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree = [pid]
    for current in tree:
        tree += [child for child, parent in parents.items() if parent == current]
    return tree if pid in parents else []


def yield_cpu(pid: int, niceness: int = 10) -> None:
    """Lower the CPU priority of every thread of a started server and its engine processes.

    On a machine shared by the server and the client, the client is the instrument: it uses little CPU but must
    wake on time, or its timestamps (and the run's validity) suffer from the engine's busy threads.
    """
    for process in _process_tree(pid):
        for task in Path(f"/proc/{process}/task").glob("[0-9]*"):
            with contextlib.suppress(OSError, ValueError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
