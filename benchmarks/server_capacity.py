"""Capacity of the API layer on one core: the reference server against GuideLLM's mock server and bare aiohttp.

    python -m benchmarks.server_capacity [--duration 15] [--rounds 3] [--quick] [--update-results]

All three servers run on core 0 (`taskset -c 0`), and `wrk` drives one of them at a time from core 1
(`taskset -c 1`; the others are idle meanwhile) with keep-alive connections, POSTing a chat request that asks
for 64 output tokens (`max_tokens: 64`, `ignore_eos: true`). Two numbers per server:

* non-streamed: completed requests per second;
* streamed (`"stream": true`): content chunks per second = completed streams per second × content chunks per
  stream, where that count is taken from real streamed responses read and parsed before the load starts,
  and wrk's bytes per response are checked against those responses' size (so a truncated or different
  response cannot be counted as a full one).

Each number is measured in interleaved rounds (every server and mode once per round, each after a warm-up) and
the median round is reported, so that load from elsewhere on the machine falls on all servers alike. The
report also gives the server's CPU time per unit of work, and flags runs in which the server did not get its
core or the machine was busy.

The servers:

* ours: `python -m reference_server --engine sim` at zero latency with everything on (auth, per-key limiter,
  schema validation, Prometheus metrics). Its concurrency limit is raised to 100000 so that wrk's connections
  are not answered with 429.
* GuideLLM's `guidellm mock-server` (installed on demand into `benchmarks/.venvs/guidellm`) with zero TTFT/ITL
  and 64 output tokens, as its CLI starts it.
* `python -m benchmarks.bare_server`: a constant-body aiohttp handler under the same interpreter and uvloop as ours,
  the physical bound.

A run in which wrk saw any non-2xx status or socket error is reported as INVALID (and the command exits 1).
Everything listens on 127.0.0.1 only; every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.support.results import RESULTS, update_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GUIDELLM_VENV = HERE / ".venvs" / "guidellm"
HOST = "127.0.0.1"
API_KEY = "esecret_capacity_benchmark"
MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
OUTPUT_TOKENS = 64
SERVER_CPU, LOAD_CPU = 0, 1
GOALS = {"non_streamed": 5.0, "streamed": 2.5}  # ours / GuideLLM
# Measured on this machine class when the issue was written (for context only; the ratios use this run).
ISSUE_REFERENCE = {"guidellm": (1429.0, 28_000.0), "bare": (38_900.0, 136_000.0)}
READY_TIMEOUT_S = 90.0
SECTION = "## Server capacity: one server core, wrk on the other (`python -m benchmarks.server_capacity`)"


# ---------------------------------------------------------------------------------------------------------------
# Processes: everything started here is tracked and stopped on exit, whatever the exit.

_children: list[subprocess.Popen[bytes]] = []


def _spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its own process group, so that it and its children can be stopped together
    )
    log.close()
    _children.append(proc)
    return proc


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    if proc.poll() is None:
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
    if proc in _children:
        _children.remove(proc)


def _stop_all() -> None:
    for proc in list(_children):
        _stop(proc, grace_s=2.0)


def _on_signal(signum: int, _frame: object) -> None:
    _stop_all()
    sys.exit(128 + signum)


# ---------------------------------------------------------------------------------------------------------------
# Tools: wrk (apt) and GuideLLM (its own venv), installed when missing.


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        sys.exit("wrk is not installed; install it (Debian/Ubuntu: apt-get install -y wrk) and run again")
    print("installing wrk with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=True, env=env, timeout=300)
    path = shutil.which("wrk")
    if path is None:
        sys.exit("apt-get installed wrk but it is not on PATH")
    return path


def ensure_guidellm() -> Path:
    exe = GUIDELLM_VENV / "bin" / "guidellm"
    if exe.exists():
        return exe
    print(f"installing guidellm into {GUIDELLM_VENV.relative_to(ROOT)} ...", flush=True)
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(GUIDELLM_VENV)], check=True, timeout=300)
    pip = [str(GUIDELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "guidellm"], check=True, timeout=1800)
    if not exe.exists():
        sys.exit(f"guidellm installed but {exe} is missing")
    return exe


def _tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


# ---------------------------------------------------------------------------------------------------------------
# Servers.


@dataclass
class Server:
    name: str
    label: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path, port_from_log: re.Pattern[str] | None, port: int) -> int:
    """Wait until the server answers GET /health; with `port_from_log`, learn the port from its ready line."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log_path)}")
        if port_from_log is not None and not port:
            m = port_from_log.search(log_path.read_text(errors="replace"))
            if m:
                port = int(m.group(1))
        if port:
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return port
                conn.close()
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready within {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_ours(logs: Path) -> Server:
    cmd = [
        "taskset", "-c", str(SERVER_CPU),
        sys.executable, "-m", "reference_server",
        "--engine", "sim", "--host", HOST, "--port", "0",
        "--api-key", API_KEY,
        "--concurrency-limit", "100000",
        "--ttft-ms", "0", "--prefill-ms-per-token", "0", "--itl-ms", "0",
        "--model", MODEL,
    ]  # fmt: skip
    log = logs / "ours.log"
    proc = _spawn(cmd, log)
    port = _wait_ready(proc, log, re.compile(r"reference server ready at http://[^:]+:(\d+)/v1"), 0)
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
    exe = ensure_guidellm()
    port = _free_port()
    cmd = [
        "taskset", "-c", str(SERVER_CPU),
        str(exe), "mock-server", "--host", HOST, "--port", str(port), "--model", MODEL,
        "--request-latency", "0", "--ttft-ms", "0", "--itl-ms", "0",
        "--output-tokens", str(OUTPUT_TOKENS),
    ]  # fmt: skip
    log = logs / "guidellm.log"
    # Offline: the mock server needs no model files, and a benchmark must not reach out to a hub.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TERM": "dumb"}
    proc = _spawn(cmd, log, env)
    _wait_ready(proc, log, None, port)
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
        "taskset", "-c", str(SERVER_CPU),
        sys.executable, "-m", "benchmarks.bare_server", "--host", HOST, "--port", "0",
        "--chunks", str(OUTPUT_TOKENS),
    ]  # fmt: skip
    log = logs / "bare.log"
    proc = _spawn(cmd, log)
    port = _wait_ready(proc, log, re.compile(r"bare server ready at http://[^:]+:(\d+)"), 0)
    return Server("bare", "bare aiohttp (constant body)", proc, port, log, note="same interpreter + uvloop as ours")


STARTERS: dict[str, Callable[[Path], Server]] = {"ours": start_ours, "guidellm": start_guidellm, "bare": start_bare}


# ---------------------------------------------------------------------------------------------------------------
# One real request per mode: what a full response looks like, byte for byte.


def request_body(stream: bool) -> bytes:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a short poem about load testing."}],
        "max_tokens": OUTPUT_TOKENS,
        "ignore_eos": True,
        "stream": stream,
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Probe:
    status: int
    wire_bytes: int  # status line + headers + body as sent (chunked framing included)
    events: int  # SSE events other than [DONE]
    content_chunks: int  # events that carry output text
    done: bool
    completion_tokens: int | None


def _read_raw(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One keep-alive request (as wrk sends it) and exactly the bytes of its response."""
    head = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head += [f"Content-Length: {len(body)}", "", ""]
    with socket.create_connection((HOST, port), timeout=30) as s:
        s.sendall("\r\n".join(head).encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += _recv(s)
        end = data.index(b"\r\n\r\n") + 4
        fields = data[:end].decode("latin-1").lower()
        if m := re.search(r"\r\ncontent-length:\s*(\d+)", fields):
            while len(data) < end + int(m.group(1)):
                data += _recv(s)
            return data[: end + int(m.group(1))]
        if "chunked" not in fields:
            raise RuntimeError("the probe response has neither Content-Length nor chunked framing")
        while not data.endswith(b"\r\n0\r\n\r\n"):
            data += _recv(s)
        return data


def _recv(s: socket.socket) -> bytes:
    chunk = s.recv(65536)
    if not chunk:
        raise RuntimeError("the server closed the connection in the middle of the probe response")
    return chunk


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    i = 0
    while True:
        j = data.index(b"\r\n", i)
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[j + 2 : j + 2 + size])
        i = j + 2 + size + 2


def probe(server: Server, stream: bool) -> Probe:
    raw = _read_raw(server.port, "/v1/chat/completions", request_body(stream), server.headers)
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        payload = _dechunk(payload)
    wire = len(raw)
    if not stream:
        tokens = None
        if status == 200:
            tokens = json.loads(payload).get("usage", {}).get("completion_tokens")
        return Probe(status, wire, 0, 0, False, tokens)
    events = content = 0
    done = False
    tokens = None
    for block in payload.decode().split("\n\n"):
        data = "\n".join(ln[5:].lstrip() for ln in block.split("\n") if ln.startswith("data:"))
        if not data:
            continue
        if data == "[DONE]":
            done = True
            continue
        events += 1
        chunk = json.loads(data)
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content") or choice.get("text"):
                content += 1
        if chunk.get("usage"):
            tokens = chunk["usage"].get("completion_tokens")
    return Probe(status, wire, events, content, done, tokens)


# ---------------------------------------------------------------------------------------------------------------
# Load: wrk with a Lua script for the POST and a machine-readable summary.

_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests":%d,"bytes":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass
class LoadResult:
    requests: int
    bytes: int
    duration_s: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    server_cpu: float  # fraction of one core used by the server during the run
    load_cpu: float  # fraction of one core used by wrk
    server_cpu_s: float  # CPU seconds the server used during the run
    other_cpu: float  # fraction of one core used by everything else on the machine during the run

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_s / self.requests if self.requests else 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and all its descendants that are still alive."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    seen: set[int] = set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        pids.extend(int(c) for c in children)
    return total


def _machine_busy_s() -> float:
    """CPU seconds all CPUs of the machine have spent busy since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, server: Server, stream: bool, duration_s: float, connections: int, lua_dir: Path) -> LoadResult:
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in server.headers.items())
    script = lua_dir / f"{server.name}_{'stream' if stream else 'plain'}.lua"
    script.write_text(_LUA.format(body=request_body(stream).decode(), headers=headers))
    cmd = [
        "taskset", "-c", str(LOAD_CPU), wrk,
        "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s",
        "-s", str(script), f"http://{HOST}:{server.port}/v1/chat/completions",
    ]  # fmt: skip
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu0 = _proc_cpu_s(server.proc.pid)
    busy0 = _machine_busy_s()
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    wall = time.monotonic() - t0
    server_cpu1 = _proc_cpu_s(server.proc.pid)
    busy1 = _machine_busy_s()
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"WRK_JSON (\{.*\})", out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    s = json.loads(m.group(1))
    duration = s["duration_us"] / 1e6
    load_cpu_s = (after_children.ru_utime + after_children.ru_stime) - (
        before_children.ru_utime + before_children.ru_stime
    )
    return LoadResult(
        requests=s["requests"],
        bytes=s["bytes"],
        duration_s=duration,
        errors={k: s[k] for k in ("connect", "read", "write", "status", "timeout")},
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        server_cpu=(server_cpu1 - server_cpu0) / wall,
        load_cpu=load_cpu_s / wall,
        server_cpu_s=server_cpu1 - server_cpu0,
        other_cpu=max(0.0, (busy1 - busy0) - (server_cpu1 - server_cpu0) - load_cpu_s) / wall,
    )


# ---------------------------------------------------------------------------------------------------------------
# Measurements: every server is up for the whole run and measured in interleaved rounds, so that load from
# elsewhere on the machine, which comes and goes, falls on all of them alike.


@dataclass
class Measurement:
    """One server in one mode: its probe responses and one wrk run per round."""

    probes: list[Probe]
    stream: bool
    runs: list[LoadResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # any of these makes the number invalid
    warnings: list[str] = field(default_factory=list)  # these make it less trustworthy (a busy machine), not wrong

    @property
    def valid(self) -> bool:
        return not self.problems and bool(self.runs)

    @property
    def chunks_per_response(self) -> int:
        return self.probes[0].content_chunks if self.stream else 0

    @property
    def rates(self) -> list[float]:
        """Per round: requests/s, or content chunks/s when streamed."""
        per = self.chunks_per_response if self.stream else 1
        return [run.rate * per for run in self.runs]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.runs else 0.0

    @property
    def responses_per_s(self) -> float:
        return statistics.median(run.rate for run in self.runs) if self.runs else 0.0

    @property
    def cpu_us_per_response(self) -> float:
        requests = sum(run.requests for run in self.runs)
        return 1e6 * sum(run.server_cpu_s for run in self.runs) / requests if requests else 0.0

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs) if self.runs else 0.0


def check_probes(probes: list[Probe], stream: bool) -> list[str]:
    problems: list[str] = []
    if any(p.status != 200 for p in probes):
        problems.append(f"probe answered HTTP {[p.status for p in probes]}")
    if stream:
        if any(p.content_chunks != OUTPUT_TOKENS for p in probes):
            counts = [p.content_chunks for p in probes]
            problems.append(f"probe streams had {counts} content chunks, expected {OUTPUT_TOKENS}")
        if not all(p.done for p in probes):
            problems.append("probe stream did not end with [DONE]")
    elif any(p.completion_tokens not in (None, OUTPUT_TOKENS) for p in probes):
        problems.append(f"probe responses had {[p.completion_tokens for p in probes]} completion tokens")
    return problems


def check_run(m: Measurement, load: LoadResult, connections: int) -> None:
    if load.error_total:
        m.problems.append("wrk errors: " + ", ".join(f"{k}={v}" for k, v in load.errors.items() if v))
    if load.requests == 0:
        m.problems.append("no request completed")
        return
    # wrk's byte count also holds the partial responses in flight when it stops (at most one per connection),
    # so bytes per completed response lie between the probes' sizes and that plus the partials' share. Ids,
    # dates and token texts vary a little in length (the 2 % slack); short or error responses (a missing chunk
    # is ~250 B of ~17 kB) pull the average below the floor.
    per_response = load.bytes / load.requests
    smallest, largest = min(p.wire_bytes for p in m.probes), max(p.wire_bytes for p in m.probes)
    low, high = 0.98 * smallest, 1.02 * largest * (1 + connections / load.requests)
    if not low <= per_response <= high:
        m.problems.append(
            f"wrk read {per_response:.0f} B per completed response; a full response is {smallest}..{largest} B "
            f"(expected {low:.0f}..{high:.0f} B with the partial responses in flight at the end)"
        )


def warn(m: Measurement) -> None:
    server_cpu, load_cpu, other_cpu = m.median("server_cpu"), m.median("load_cpu"), m.median("other_cpu")
    if server_cpu < 0.9:
        m.warnings.append(f"the server used only {server_cpu:.0%} of its core (median): it was not the bottleneck")
    if load_cpu > 0.9:
        m.warnings.append(f"wrk used {load_cpu:.0%} of its core (median): the load tool may be the bottleneck")
    if other_cpu > 0.1:
        m.warnings.append(f"other processes used {other_cpu:.0%} of a core (median): the machine was busy")


@dataclass
class ServerResult:
    server: str
    label: str
    note: str
    plain: Measurement | None = None
    stream: Measurement | None = None
    failure: str = ""

    def mode(self, stream: bool) -> Measurement | None:
        return self.stream if stream else self.plain


def run_all(names: list[str], wrk: str, args: argparse.Namespace, work: Path) -> list[ServerResult]:
    results: dict[str, ServerResult] = {}
    servers: dict[str, Server] = {}
    for name in names:
        print(f"starting {name} ...", flush=True)
        try:
            server = STARTERS[name](work)
        except Exception as exc:
            _stop_all_but(servers.values())
            print(f"   failed to start: {exc}", flush=True)
            results[name] = ServerResult(name, name, "", failure=f"did not start: {exc}")
            continue
        servers[name] = server
        result = results[name] = ServerResult(name, server.label, server.note)
        try:
            for stream in (False, True):
                probes = [probe(server, stream) for _ in range(3)]  # sizes vary a little (texts, timestamps)
                measurement = Measurement(probes, stream, problems=check_probes(probes, stream))
                if stream:
                    result.stream = measurement
                else:
                    result.plain = measurement
                shape = f"{probes[0].events} SSE events + [DONE], " if stream else ""
                print(
                    f"   probe {'streamed' if stream else 'non-streamed'}: {shape}{probes[0].wire_bytes} B", flush=True
                )
        except Exception as exc:
            result.failure = f"probe failed: {exc}"
            print(f"   {result.failure}", flush=True)
    active = [n for n in names if n in servers and not results[n].failure]
    per_round_s = max(1, round(args.duration / args.rounds))
    for r in range(args.rounds):
        order = active[r % len(active) :] + active[: r % len(active)] if active else []
        for name in order:
            server, result = servers[name], results[name]
            if result.failure:
                continue
            for stream in (False, True):
                m = result.mode(stream)
                assert m is not None
                label = f"round {r + 1}/{args.rounds} {name} {'streamed' if stream else 'non-streamed'}"
                try:
                    run_wrk(wrk, server, stream, args.warmup if r == 0 else 1, args.connections, work)  # warm-up
                    load = run_wrk(wrk, server, stream, per_round_s, args.connections, work)
                except Exception as exc:
                    result.failure = f"{label} failed: {exc}"
                    print(f"   {result.failure}", flush=True)
                    break
                m.runs.append(load)
                check_run(m, load, args.connections)
                unit = "chunks/s" if stream else "req/s"
                print(
                    f"{label}: {m.rates[-1]:,.0f} {unit}; server CPU {load.server_cpu:.0%}, wrk CPU "
                    f"{load.load_cpu:.0%}, others {load.other_cpu:.0%}; errors {load.error_total}",
                    flush=True,
                )
            if server.proc.poll() is not None and not result.failure:
                result.failure = f"server exited with {server.proc.returncode}:\n{_tail(server.log_path)}"
    for name, server in servers.items():
        _stop(server.proc)
        for done in (results[name].plain, results[name].stream):
            if done is not None and done.runs:
                warn(done)
    return [results[n] for n in names]


def _stop_all_but(keep: Any) -> None:
    keep_pids = {s.proc.pid for s in keep}
    for proc in list(_children):
        if proc.pid not in keep_pids:
            _stop(proc)


# ---------------------------------------------------------------------------------------------------------------
# Report.


def _rate_cell(m: Measurement | None) -> str:
    if m is None or not m.runs:
        return "—"
    cell = f"{m.rate:,.0f}"
    if len(m.runs) > 1:
        cell += f" ({min(m.rates):,.0f}–{max(m.rates):,.0f})"
    return cell + ("" if m.valid else " INVALID")


def _ratio(a: Measurement | None, b: Measurement | None, by_cpu: bool = False) -> float | None:
    if not (a and b and a.runs and b.runs):
        return None
    if by_cpu:
        return b.cpu_us_per_response / a.cpu_us_per_response if a.cpu_us_per_response else None
    return a.rate / b.rate if b.rate else None


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def report(results: list[ServerResult], meta: dict[str, Any]) -> str:
    by = {r.server: r for r in results}
    mach = meta["machine"]
    lines = [
        SECTION,
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {mach['nproc']} CPUs, {mach['cpu']}, Linux {mach['kernel']}, Python {mach['python']}; "
        f"load average before the run {mach['load_avg']}",
        f"- load: {meta['wrk']}, 1 thread, {meta['connections']} keep-alive connections; server on CPU {SERVER_CPU}, "
        f"wrk on CPU {LOAD_CPU}; {meta['rounds']} interleaved rounds of {meta['round_s']} s per number "
        f"(each after a warm-up); the median round is reported, with the range in brackets",
        f"- request: POST /v1/chat/completions, `max_tokens: {OUTPUT_TOKENS}`, `ignore_eos: true`; "
        "chunks/s = completed streams/s × content chunks per stream (counted in probe responses)",
        f"- GuideLLM: {meta['guidellm']}",
        "",
        "| server | non-streamed req/s | streamed chunks/s | streams/s | server CPU (plain / stream) "
        "| wrk CPU | other processes' CPU | p50 / p99 ms (plain) | p50 / p99 ms (stream) |",
        "|---|---:|---:|---:|---|---|---|---|---|",
    ]
    for r in results:
        p, s = r.plain, r.stream
        both = p is not None and s is not None and bool(p.runs) and bool(s.runs)

        def pair(attr: str, p: Measurement | None = p, s: Measurement | None = s, both: bool = both) -> str:
            return f"{p.median(attr):.0%} / {s.median(attr):.0%}" if both and p and s else "—"

        def lat(m: Measurement | None) -> str:
            return f"{m.median('p50_ms'):.1f} / {m.median('p99_ms'):.1f}" if m and m.runs else "—"

        streams = f"{s.responses_per_s:,.0f}" if s and s.runs else "—"
        lines.append(
            f"| {r.label} | {_rate_cell(p)} | {_rate_cell(s)} | {streams} | {pair('server_cpu')} "
            f"| {pair('load_cpu')} | {pair('other_cpu')} | {lat(p)} | {lat(s)} |"
        )
    ours, gl, bare = by.get("ours"), by.get("guidellm"), by.get("bare")

    def m(r: ServerResult | None, stream: bool) -> Measurement | None:
        return r.mode(stream) if r else None

    lines += ["", "| ratio | non-streamed req/s | streamed chunks/s |", "|---|---:|---:|"]
    if ours and gl:
        goals = f"goal ≥ {GOALS['non_streamed']:g}× / ≥ {GOALS['streamed']:g}×"
        lines.append(
            f"| **ours / GuideLLM** ({goals}) | {_x(_ratio(m(ours, False), m(gl, False)))} "
            f"| {_x(_ratio(m(ours, True), m(gl, True)))} |"
        )
        lines.append(
            f"| ours / GuideLLM, by server CPU per unit of work | "
            f"{_x(_ratio(m(ours, False), m(gl, False), True))} | {_x(_ratio(m(ours, True), m(gl, True), True))} |"
        )
    for a, b, label in ((ours, bare, "ours / bare aiohttp"), (gl, bare, "GuideLLM / bare aiohttp")):
        if a and b:
            lines.append(f"| {label} | {_x(_ratio(m(a, False), m(b, False)))} | {_x(_ratio(m(a, True), m(b, True)))} |")
    lines += [
        "",
        "Server CPU per unit of work (CPU time of the server process during the measured runs / work done; it "
        "depends less on other load on the machine than the rates do):",
        "",
        "| server | µs CPU per non-streamed request | µs CPU per stream | µs CPU per chunk |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        p, s = r.plain, r.stream
        per_req = f"{p.cpu_us_per_response:,.0f}" if p and p.runs else "—"
        per_stream = f"{s.cpu_us_per_response:,.0f}" if s and s.runs else "—"
        per_chunk = (
            f"{s.cpu_us_per_response / s.chunks_per_response:,.1f}" if s and s.runs and s.chunks_per_response else "—"
        )
        lines.append(f"| {r.label} | {per_req} | {per_stream} | {per_chunk} |")
    lines.append("")
    if ours and gl:
        for stream, goal in ((False, GOALS["non_streamed"]), (True, GOALS["streamed"])):
            ratio = _ratio(m(ours, stream), m(gl, stream))
            if ratio is not None:
                verdict = "MET" if ratio >= goal else "MISSED"
                lines.append(
                    f"- {'streamed chunks/s' if stream else 'non-streamed req/s'}: ours is {ratio:.2f}× GuideLLM "
                    f"— goal ≥ {goal:g}×: **{verdict}**"
                )
    ref = ISSUE_REFERENCE
    lines.append(
        "- for context, the issue's earlier measurements on this machine class: "
        f"GuideLLM {ref['guidellm'][0]:,.0f} req/s and ≈{ref['guidellm'][1]:,.0f} chunks/s, "
        f"bare aiohttp {ref['bare'][0]:,.0f} req/s and ≈{ref['bare'][1]:,.0f} chunks/s"
    )
    for r in results:
        lines.append(f"- {r.label}" + (f": {r.note}" if r.note else ""))
        for mode, mm in (("non-streamed", r.plain), ("streamed", r.stream)):
            if mm is None:
                continue
            pr = mm.probes[0]
            shape = f"{pr.events} SSE events + [DONE], {pr.content_chunks} with content, " if mm.stream else ""
            requests = sum(run.requests for run in mm.runs)
            read = f"; wrk read {sum(run.bytes for run in mm.runs) / requests:,.0f} B per response" if requests else ""
            sizes = sorted({p.wire_bytes for p in mm.probes})
            lines.append(f"  - {mode}: a probe response is {shape}{'/'.join(map(str, sizes))} B on the wire{read}")
            lines += [f"  - INVALID {mode}: {problem}" for problem in dict.fromkeys(mm.problems)]
            lines += [f"  - warning {mode}: {warning}" for warning in mm.warnings]
        if r.failure:
            lines.append(f"  - FAILED: {r.failure}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--duration",
        type=float,
        default=15.0,
        help="measured seconds per number, split over the rounds (default %(default)s)",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds in the first round (default %(default)s)")
    p.add_argument("--connections", type=int, default=64, help="wrk keep-alive connections (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run (~30 s): one round of 2 s after a 1 s warm-up")
    p.add_argument(
        "--servers", default="ours,guidellm,bare", help="comma-separated subset of ours,guidellm,bare (default all)"
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--markdown", type=Path, help="also write the report (Markdown) to this file")
    p.add_argument(
        "--update-results",
        action="store_true",
        help=f"replace this benchmark's section of {RESULTS.relative_to(ROOT)} with the report (if all runs are valid)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 2.0, 1, 1.0
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1:
        p.error("--rounds, --duration and --connections must be positive")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(STARTERS)
    if unknown:
        p.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    atexit.register(_stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        sys.exit("needs at least 2 CPUs and taskset (util-linux)")
    # This process only orchestrates; keep it off the server's core.
    os.sched_setaffinity(0, {LOAD_CPU})
    wrk = ensure_wrk()
    if "guidellm" in args.servers:
        ensure_guidellm()
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(
            ["python", "-m", "benchmarks.server_capacity", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(),
        "wrk": _tool_version([wrk, "-v"]).split(" [")[0],
        "guidellm": _tool_version([str(GUIDELLM_VENV / "bin" / "guidellm"), "--version"])
        if "guidellm" in args.servers
        else "not run",
        "connections": args.connections,
        "rounds": args.rounds,
        "round_s": max(1, round(args.duration / args.rounds)),
        "warmup_s": args.warmup,
    }
    print(
        f"server capacity: {meta['machine']['nproc']} CPUs ({meta['machine']['cpu']}), "
        f"load average {meta['machine']['load_avg']}; servers: {', '.join(args.servers)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="server_capacity_") as tmp:
        results = run_all(args.servers, wrk, args, Path(tmp))
    text = report(results, meta)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": [_as_json(r) for r in results]}, indent=2))
    ok = all(r.plain and r.stream and r.plain.valid and r.stream.valid and not r.failure for r in results)
    if not ok:
        print("Some runs are INVALID or failed; their numbers must not be used.", file=sys.stderr)
    elif args.update_results:
        update_section(SECTION, text)
        print(f"updated {RESULTS.relative_to(ROOT)}")
    return 0 if ok else 1


def _as_json(r: ServerResult) -> dict[str, Any]:
    def one(m: Measurement | None) -> dict[str, Any] | None:
        if m is None:
            return None
        return {
            "rate_per_s": m.rate,
            "unit": "chunks/s" if m.stream else "requests/s",
            "rates_per_round": m.rates,
            "responses_per_s": m.responses_per_s,
            "chunks_per_response": m.chunks_per_response,
            "cpu_us_per_response": m.cpu_us_per_response,
            "probe_bytes": [p.wire_bytes for p in m.probes],
            "runs": [dataclasses.asdict(run) for run in m.runs],
            "problems": m.problems,
            "warnings": m.warnings,
        }

    return {"server": r.server, "label": r.label, "plain": one(r.plain), "stream": one(r.stream), "failure": r.failure}


if __name__ == "__main__":
    sys.exit(main())
