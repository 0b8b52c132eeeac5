"""What a run was measured on: the client machine and its software, and what the target says of itself.

Read once before the load (`describe`) and kept in the run line of the records (`environment`), then in
`summary.json` and the report's header, so that a number always travels with the hardware and software it was
measured on, and a baseline comparison can say when they differ (`harness.analysis.regression`).

The client: CPU model and count, memory, OS, kernel, Python, the harness's version and those of its own
dependencies, and GPUs as `nvidia-smi` lists them when it is installed (on a machine that also runs the server,
the server's GPUs). The target: its model list, its `Server` header, and its version endpoint if it has one
(`/version`, as vLLM serves it, or `/info`, as TGI does). Nothing here fails a run: what cannot be read is None,
with the reason in `errors`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from harness.target.endpoint import Target
from harness.target.telemetry import get

DISTRIBUTION = "anyscale-loadtest"
TIMEOUT_S = 5.0
VERSION_PATHS = ("/version", "/info")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def describe(target: Target, headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The client machine and the target, as `summary.json`'s `environment` holds them."""
    return {"client": client(), "target": target_software(target, headers)}


def client() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine() or None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError):
        if match := re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text()):
            memory = round(int(match.group(1)) / 1024 / 1024, 1)
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": memory,
        "os": _os_name(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "harness": _version(DISTRIBUTION),
        "packages": packages(),
        "gpus": gpus(),
    }


def _os_name() -> str:
    with contextlib.suppress(OSError):
        name = platform.freedesktop_os_release().get("PRETTY_NAME")
        if name:
            return name
    return platform.platform()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def packages() -> dict[str, str | None]:
    """The installed versions of the harness's own dependencies (its extras aside), by name."""
    try:
        required = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return {}
    names = sorted({m.group(0).lower() for r in required if "extra ==" not in r and (m := _NAME.match(r))})
    return {name: _version(name) for name in names}


def gpus() -> list[str] | None:
    """Each GPU as `nvidia-smi` lists it (name, memory, driver); None when there is no `nvidia-smi`."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    query = [tool, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"nvidia-smi failed: {exc}"]
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] or []


def target_software(target: Target, headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The target's model list and `Server` header (from `/models`, with the key) and its version endpoint."""
    errors: list[str] = []
    models, server = _models(target, headers, errors)
    version, version_url = None, None
    for path in VERSION_PATHS:
        url = f"{target.root_url}{path}"
        fetched = get(url, TIMEOUT_S, headers, accept="application/json")
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(fetched.body) if fetched.error is None else None
            if isinstance(body, dict):
                version, version_url = body, url
                break
    return {"models": models, "server_header": server, "version": version, "version_url": version_url,
            "errors": errors}  # fmt: skip


def _models(target: Target, headers: Sequence[tuple[str, str]], errors: list[str]) -> tuple[list[str] | None, Any]:
    """The ids the target lists, and the `Server` header of that answer."""
    url = f"{target.base_url.rstrip('/')}/models"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {target.api_key}", **dict(headers)})
    try:
        with opener.open(request, timeout=TIMEOUT_S) as response:
            server = response.headers.get("Server")
            body = orjson.loads(response.read())
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts and bad JSON
        errors.append(f"{url}: {exc}")
        return None, None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        errors.append(f"{url}: not a model list")
        return None, server
    return [str(m.get("id")) for m in data if isinstance(m, dict)], server
