"""What a run was measured on: the client machine and the target's software (`harness.target.provenance`:
`summary.environment`)."""

# No `from __future__ import annotations`: `NotRequired` must be evaluated for `__required_keys__` to be right.
from typing import Any, TypedDict


class ClientMachine(TypedDict):
    host: str
    cpu: str | None
    cpus: int | None
    memory_gib: float | None
    os: str
    kernel: str
    python: str
    harness: str | None
    packages: dict[str, str | None]
    gpus: list[str] | None


class TargetSoftware(TypedDict):
    models: list[str] | None
    server_header: str | None
    version: dict[str, Any] | None
    version_url: str | None
    errors: list[str]


class RunEnvironment(TypedDict):
    client: ClientMachine
    target: TargetSoftware
