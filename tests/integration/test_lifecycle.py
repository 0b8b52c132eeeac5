"""`python -m reference_server` as a process: readiness, keys, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
READY = re.compile(r"ready at (http://\S+)/v1")


class Proc:
    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("ANYSCALE_API_KEY", "REFERENCE_SERVER_API_KEYS")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reference_server", "--port", "0", *args], stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self.url = ""
        ready = threading.Event()

        def pump() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                if (m := READY.search(line)) and not self.url:
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        assert ready.wait(60) and self.url, "".join(self.lines)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.process.poll() is None:
            p.process.kill()
            p.process.wait()


async def test_health_models_and_a_generated_key_printed_once(procs: list[Proc]) -> None:
    p = Proc("--ttft-ms", "0", "--itl-ms", "0")
    procs.append(p)
    keys = re.findall(r"esecret_[A-Za-z0-9_-]+", p.log)
    assert len(keys) == 1
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{p.url}/health") as r:
            assert r.status == 200
        async with http.get(f"{p.url}/v1/models") as r:
            assert r.status == 401
        async with http.get(f"{p.url}/v1/models", headers={"Authorization": f"Bearer {keys[0]}"}) as r:
            assert (await r.json())["data"][0]["id"] == MODEL
    assert p.stop() == 0
    assert p.log.count(keys[0]) == 1


async def test_keys_file_with_digests_and_per_key_limits(procs: list[Proc], tmp_path: Path) -> None:
    secret = "esecret_from_a_file_0123456789"
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(
        f'[[keys]]\nname = "team-a"\nsha256 = "{hashlib.sha256(secret.encode()).hexdigest()}"\nconcurrency_limit = 7\n'
    )
    keys_file.chmod(0o644)
    p = Proc("--keys-file", str(keys_file))
    procs.append(p)
    assert "readable by group or others" in p.log
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{p.url}/v1/completions",
            headers={"Authorization": f"Bearer {secret}"},
            json={"model": MODEL, "prompt": "x", "max_tokens": 1},
        ) as r,
    ):
        assert r.status == 200 and r.headers["x-concurrency-limit"] == "7"
    assert p.stop() == 0
    assert secret not in p.log


async def test_sigterm_lets_open_streams_finish_and_refuses_new_requests_with_503(procs: list[Proc]) -> None:
    key = "esecret_shutdown_test_key_42"
    p = Proc("--api-key", key, "--ttft-ms", "1", "--itl-ms", "20", "--grace-period", "30")
    procs.append(p)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": MODEL, "prompt": "x", "max_tokens": 50, "ignore_eos": True, "stream": True}
    async with aiohttp.ClientSession() as streaming, aiohttp.ClientSession() as other:
        # A keep-alive connection opened before the signal, to send a request during the drain.
        async with other.get(f"{p.url}/v1/models", headers=headers) as r:
            assert r.status == 200
        responses = [await streaming.post(f"{p.url}/v1/completions", json=body, headers=headers) for _ in range(3)]
        for r in responses:
            assert (await r.content.readuntil(b"\n\n")).startswith(b"data: ")
        p.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):  # until the signal is handled; models requests hold no slot
            while True:
                async with other.get(f"{p.url}/v1/models", headers=headers) as refused:
                    status, body = refused.status, await refused.json()
                if status != 200:
                    break
                await asyncio.sleep(0.02)
        assert status == 503 and body["error"]["code"] == "shutting_down"
        for r in responses:
            assert (await r.read()).endswith(b"data: [DONE]\n\n")
            r.release()
    assert p.process.wait(timeout=60) == 0
    assert key not in p.log


async def test_sigterm_with_thirty_open_streams_lets_all_of_them_finish(procs: list[Proc]) -> None:
    key = "esecret_thirty_streams_key_30"
    p = Proc("--api-key", key, "--ttft-ms", "1", "--itl-ms", "20", "--grace-period", "30", "--concurrency-limit", "30")
    procs.append(p)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": MODEL, "prompt": "x", "max_tokens": 60, "ignore_eos": True, "stream": True}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as streaming, aiohttp.ClientSession() as other:
        async with other.get(f"{p.url}/v1/models", headers=headers) as r:  # a keep-alive connection for later
            assert r.status == 200
        responses = await asyncio.gather(
            *(streaming.post(f"{p.url}/v1/completions", json=body, headers=headers) for _ in range(30))
        )
        assert [r.status for r in responses] == [200] * 30
        firsts = [await r.content.readuntil(b"\n\n") for r in responses]
        assert all(first.startswith(b"data: ") for first in firsts)
        p.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            while True:
                async with other.get(f"{p.url}/v1/models", headers=headers) as refused:
                    status, error, refused_headers = refused.status, await refused.json(), refused.headers
                if status != 200:
                    break
                await asyncio.sleep(0.02)
        assert status == 503 and error["error"]["code"] == "shutting_down" and error["error"]["type"] == "server_error"
        assert refused_headers["Retry-After"] == "1" and refused_headers["Connection"] == "close"
        rests = await asyncio.gather(*(r.read() for r in responses))
        for r in responses:
            r.release()
    # Every stream ran to its end (60 content chunks and [DONE]), none was cut at the grace period.
    for first, rest in zip(firsts, rests, strict=True):
        raw = first + rest
        assert raw.endswith(b"data: [DONE]\n\n")
        assert raw.count(b'"text":') == 60 and b'"completion_tokens":60' in raw
    assert p.process.wait(timeout=60) == 0
    assert "draining in-flight requests" in p.log and p.log.rstrip().endswith("stopped")
