"""No configured key, nor a wrong key a client presented, appears in full anywhere the server writes: its log (at
DEBUG, from start to shutdown), its error responses, its metrics.

One server process with keys from the command line and from a keys file (plain and as a SHA-256 digest), and a
run that goes through everything that logs: valid keys, wrong and malformed keys (401), a key over its
concurrency limit (429), a key inside a header over the size limit (431), a client that goes away mid-stream, and a
SIGTERM shutdown with a stream still open.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
from pathlib import Path

import aiohttp

from harness.target.launch import DEFAULT_MODEL, launch_reference_server

FILE_KEY = "esecret_from_the_keys_file_0001"
DIGEST_KEY = "esecret_only_its_digest_is_on_disk_0002"
WRONG_KEY = "esecret_a_key_someone_mistyped_0003"
STREAM = {"model": DEFAULT_MODEL, "prompt": "x", "max_tokens": 40, "ignore_eos": True, "stream": True}


async def exchange(url: str, cli_keys: list[str]) -> list[bytes]:
    """Everything the server answered, for the scan."""
    bodies: list[bytes] = []

    async def call(method: str, path: str, key: str | None = None, scheme: str = "Bearer", **kw: object) -> int:
        headers = {"Authorization": f"{scheme} {key}"} if key is not None else {}
        async with http.request(method, f"{url}{path}", headers=headers, **kw) as r:  # type: ignore[arg-type]
            bodies.append(await r.read())
            return r.status

    async with aiohttp.ClientSession() as http:
        for key in [*cli_keys, FILE_KEY, DIGEST_KEY]:
            assert await call("GET", "/v1/models", key) == 200
            assert await call("POST", "/v1/completions", key, json={**STREAM, "stream": False}) == 200
        assert await call("GET", "/v1/models", WRONG_KEY) == 401
        assert await call("GET", "/v1/models", FILE_KEY, scheme="Basic") == 401
        assert await call("GET", "/v1/models", FILE_KEY[:-1]) == 401
        assert await call("POST", "/v1/chat/completions", WRONG_KEY, json={"model": DEFAULT_MODEL}) == 401
        assert await call("GET", "/v1/models", f"{FILE_KEY}{'x' * 20_000}") == 431
        # The keys file gives FILE_KEY a limit of 2: a third stream at once is refused with 429.
        held = [await http.post(f"{url}/v1/completions", json=STREAM, headers=auth(FILE_KEY)) for _ in range(2)]
        assert all(r.status == 200 for r in held)
        assert await call("POST", "/v1/completions", FILE_KEY, json=STREAM) == 429
        held[0].close()  # a client going away mid-stream
        await held[1].content.readuntil(b"\n\n")
        async with http.get(f"{url}/metrics") as r:
            bodies.append(await r.read())
        await asyncio.sleep(0.1)
        held[1].close()
    return bodies


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_no_key_appears_in_the_log_of_a_whole_run_or_in_any_answer(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps(
            {
                "keys": [
                    {"name": "file-plain", "key": FILE_KEY, "concurrency_limit": 2},
                    {"name": "file-digest", "sha256": hashlib.sha256(DIGEST_KEY.encode()).hexdigest()},
                ]
            }
        )
    )
    keys_file.chmod(0o600)
    args = ["--keys-file", str(keys_file), "--log-level", "DEBUG", "--ttft-ms=1", "--itl-ms=5"]
    with launch_reference_server(extra_args=args, keys=2) as server:
        cli_keys = [server.target.api_key, server.target.api_key_2 or ""]
        bodies = await exchange(server.target.root_url, cli_keys)
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.process.wait, 60) == 0
        async with asyncio.timeout(10):  # the log pump reads on after the exit until the pipe is empty
            while not any("stopped" in line for line in server.log_lines):
                await asyncio.sleep(0.02)
    log = "".join(server.log_lines)
    assert "accepting key 'file-plain'" in log and "request_header_fields_too_large" in log
    secrets = [*cli_keys, FILE_KEY, DIGEST_KEY, WRONG_KEY]
    for secret in secrets:
        assert secret not in log
        assert secret[8:] not in log  # not even without its prefix
        assert all(secret.encode() not in body for body in bodies)
