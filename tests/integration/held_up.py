"""A request written while a launched server's process is stopped, and the trace the server kept of it.

The kernel takes the bytes in while the process cannot run; a trace whose arrival is the kernel's time starts
before the process was let go again, one taken by the server's event loop after.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from harness.target.launch import LaunchedServer


@dataclass(frozen=True, slots=True)
class HeldUp:
    before_ns: int  # just before the request was written
    resumed_ns: int  # just before the process was let go
    status: int
    trace: dict[str, Any]


def request_while_stopped(server: LaunchedServer, hold_s: float = 0.3) -> HeldUp:
    t = server.target
    url = urllib.parse.urlsplit(t.root_url)
    auth = {"Authorization": f"Bearer {t.api_key}"}
    body = json.dumps({"model": t.model, "prompt": "Hello", "max_tokens": 2})
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=120)
    conn.connect()  # accepted before the stop, so only the request's own bytes wait
    try:
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            before = time.perf_counter_ns()
            conn.request("POST", "/v1/completions", body, {**auth, "Content-Type": "application/json",
                                                           "x-trace-timing": "1"})  # fmt: skip
            time.sleep(hold_s)
            resumed = time.perf_counter_ns()
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        response = conn.getresponse()
        response.read()
        ident = response.headers["x-request-id"]
    finally:
        conn.close()
    request = urllib.request.Request(f"{t.root_url}/debug/traces/{ident}", headers=auth)
    with urllib.request.urlopen(request, timeout=30) as r:
        trace = json.loads(r.read())
    return HeldUp(before, resumed, response.status, trace)
