"""The three servers, each started on the server's core and waited for, and the request they are all sent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.support.peers import GUIDELLM
from benchmarks.support.processes import HOST, Group, pinned, wait_healthy
from harness.target.launch import free_port

API_KEY = "esecret_capacity_benchmark"
MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
OUTPUT_TOKENS = 64
SERVER_CPU, LOAD_CPU = 0, 1
READY_TIMEOUT_S = 90.0
PROCESSES = Group()  # everything started here; the command stops what is left on exit, whatever the exit


@dataclass
class Server:
    name: str
    label: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _start(
    cmd: list[str], log: Path, *, ready: str = "", port: int = 0, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """`cmd` on the server's core, once it answers /health; its port is `port`, or the one its `ready` line names."""
    proc = PROCESSES.start(pinned(cmd, SERVER_CPU), log_path=log, env=env)
    port_from_log = re.compile(ready) if ready else None
    return proc, wait_healthy(proc, log, port=port, port_from_log=port_from_log, timeout_s=READY_TIMEOUT_S)


def start_ours(logs: Path) -> Server:
    cmd = [
        sys.executable, "-m", "reference_server",
        "--engine", "sim", "--host", HOST, "--port", "0",
        "--api-key", API_KEY,
        "--concurrency-limit", "100000",
        "--ttft-ms", "0", "--prefill-ms-per-token", "0", "--itl-ms", "0",
        "--model", MODEL,
    ]  # fmt: skip
    log = logs / "ours.log"
    proc, port = _start(cmd, log, ready=r"reference server ready at http://[^:]+:(\d+)/v1")
    return Server(
        "ours",
        "reference server (sim, 0 ms)",
        proc,
        port,
        log,
        {"Authorization": f"Bearer {API_KEY}"},
        "auth + limiter (--concurrency-limit 100000) + schema validation + metrics on",
    )


def start_guidellm(logs: Path) -> Server:
    exe = GUIDELLM.command()
    port = free_port()
    cmd = [
        *exe, "mock-server", "--host", HOST, "--port", str(port), "--model", MODEL,
        "--request-latency", "0", "--ttft-ms", "0", "--itl-ms", "0",
        "--output-tokens", str(OUTPUT_TOKENS),
    ]  # fmt: skip
    log = logs / "guidellm.log"
    # Offline (the peer's environment): the mock server needs no model files, and a benchmark must not reach out to
    # a hub.
    proc, port = _start(cmd, log, port=port, env=GUIDELLM.environment(TERM="dumb"))
    return Server(
        "guidellm",
        "GuideLLM mock-server",
        proc,
        port,
        log,
        note="its CLI defaults (Sanic, single process, access log on -> a file)",
    )


def start_bare(logs: Path) -> Server:
    cmd = [
        sys.executable, "-m", "benchmarks.server_capacity.bare_server", "--host", HOST, "--port", "0",
        "--chunks", str(OUTPUT_TOKENS),
    ]  # fmt: skip
    log = logs / "bare.log"
    proc, port = _start(cmd, log, ready=r"bare server ready at http://[^:]+:(\d+)")
    return Server("bare", "bare aiohttp (constant body)", proc, port, log, note="same interpreter + uvloop as ours")


STARTERS: dict[str, Callable[[Path], Server]] = {"ours": start_ours, "guidellm": start_guidellm, "bare": start_bare}


def request_body(stream: bool) -> bytes:
    """What every server is sent: a chat request for 64 output tokens, streamed or not."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a short poem about load testing."}],
        "max_tokens": OUTPUT_TOKENS,
        "ignore_eos": True,
        "stream": stream,
    }
    return json.dumps(body, separators=(",", ":")).encode()
