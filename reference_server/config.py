"""Server configuration: parsed once at the edge (the command line) into frozen objects."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import stat
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from schemas import Profile

log = logging.getLogger(__name__)

EngineName = Literal["sim", "vllm"]
DEFAULT_CONCURRENCY_LIMIT = 30
KEY_PREFIX = "esecret_"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One credential. Only the SHA-256 digest of the secret is kept."""

    name: str
    sha256: bytes
    concurrency_limit: int | None = None


@dataclass(frozen=True, slots=True)
class SimOptions:
    """The simulator's latency model; defaults are those of a small model on one GPU (vLLM, 8B class)."""

    ttft_ms: float = 25.0
    prefill_ms_per_token: float = 0.05
    itl_ms: float = 12.0
    itl_batch_factor: float = 0.004
    max_num_seqs: int = 256
    output_len_mean: int = 96
    seed: int = 0
    max_model_len: int | None = None  # caps every model's context; None keeps each model's own
    # The first N tokens of every request are reasoning (`reasoning_content`), as a reasoning model thinks first.
    reasoning_tokens: int = 0
    # The prefix cache (`engines/sim/prefix_cache.py`): blocks of `block_size` tokens, at most `prefix_cache_blocks`
    # of them (0: no cache), as vLLM's default block size and an 8B model's KV cache on one GPU (~130k tokens).
    block_size: int = 16
    prefix_cache_blocks: int = 8192


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    engine: EngineName = "sim"
    profile: Profile = "anyscale"
    keys: tuple[ApiKey, ...] = ()
    concurrency_limit: int = DEFAULT_CONCURRENCY_LIMIT
    models: tuple[str, ...] = ()
    enable_faults: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    grace_period_s: float = 30.0
    body_timeout_s: float = 30.0
    sim: SimOptions = field(default_factory=SimOptions)
    engine_options: dict[str, Any] = field(default_factory=dict)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def mask(secret: str) -> str:
    """What may be logged of a key: its prefix and last four characters."""
    head = KEY_PREFIX if secret.startswith(KEY_PREFIX) else ""
    return f"{head}…{secret[-4:]}" if len(secret) > len(head) + 8 else f"{head}…"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


def keys_from_secrets(secrets_: Sequence[str], prefix: str) -> list[ApiKey]:
    return [ApiKey(name=f"{prefix}-{i}", sha256=digest(s)) for i, s in enumerate(secrets_, start=1)]


def load_keys_file(path: Path) -> list[ApiKey]:
    """Keys from TOML or JSON: `keys = [{name, key | sha256, concurrency_limit?}, …]`.

    A file that others can read is accepted with a warning, like ssh does for loose permissions on a config.
    """
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("keys file %s is readable by group or others (mode %o); chmod 600 it", path, mode & 0o777)
    raw = path.read_bytes()
    data: Any = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    entries = data.get("keys") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of keys under 'keys'")
    keys: list[ApiKey] = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: key #{i} is not a table")
        name = str(entry.get("name") or f"file-{i}")
        if "key" in entry:
            sha = digest(str(entry["key"]))
        elif "sha256" in entry:
            sha = bytes.fromhex(str(entry["sha256"]))
            if len(sha) != 32:
                raise ValueError(f"{path}: key {name!r} has a sha256 that is not 64 hex digits")
        else:
            raise ValueError(f"{path}: key {name!r} needs 'key' or 'sha256'")
        limit = entry.get("concurrency_limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"{path}: key {name!r} has an invalid concurrency_limit")
        keys.append(ApiKey(name=name, sha256=sha, concurrency_limit=limit))
    return keys


def keys_from_environment(environ: os._Environ[str] | dict[str, str]) -> list[ApiKey]:
    """`ANYSCALE_API_KEY` (the spec's variable) and `REFERENCE_SERVER_API_KEYS` (comma-separated)."""
    found = [s.strip() for s in environ.get("REFERENCE_SERVER_API_KEYS", "").split(",") if s.strip()]
    if environ.get("ANYSCALE_API_KEY"):
        found.append(environ["ANYSCALE_API_KEY"])
    return keys_from_secrets(found, "env")
