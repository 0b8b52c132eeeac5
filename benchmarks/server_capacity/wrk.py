"""The load: wrk (installed with apt when missing) from the load core, with a Lua script for the POST and a
machine-readable summary, and what the run cost the server, wrk and the rest of the machine in CPU."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.server_capacity.servers import LOAD_CPU, Server, request_body
from benchmarks.support.processes import HOST, pinned
from benchmarks.support.usage import busy_seconds, cpu_seconds


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


def run_wrk(wrk: str, server: Server, stream: bool, duration_s: float, connections: int, lua_dir: Path) -> LoadResult:
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in server.headers.items())
    script = lua_dir / f"{server.name}_{'stream' if stream else 'plain'}.lua"
    script.write_text(_LUA.format(body=request_body(stream).decode(), headers=headers))
    argv = [
        wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s",
        "-s", str(script), f"http://{HOST}:{server.port}/v1/chat/completions",
    ]  # fmt: skip
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu0 = cpu_seconds(server.proc.pid)
    busy0 = busy_seconds()
    t0 = time.monotonic()
    out = subprocess.run(pinned(argv, LOAD_CPU), capture_output=True, text=True, timeout=duration_s + 60)
    wall = time.monotonic() - t0
    server_cpu1 = cpu_seconds(server.proc.pid)
    busy1 = busy_seconds()
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
