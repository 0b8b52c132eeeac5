"""What a run was measured on, as the report shows it: one line for the page's header and a table beside the
target's (from `summary.json`'s `environment`, which `harness.target.provenance` read before the run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.analysis.shape import ClientMachine, Summary, TargetSoftware
from harness.report.tables import Table


def _machine(c: ClientMachine) -> str:
    memory = "?" if c["memory_gib"] is None else f"{c['memory_gib']:g} GiB"
    return f"{c['cpu'] or '?'} × {c['cpus'] or '?'} CPUs, {memory}"


def _gpus(c: ClientMachine) -> str:
    return "none found (no nvidia-smi)" if c["gpus"] is None else "; ".join(c["gpus"]) or "none"


def _version(t: TargetSoftware) -> str:
    """The version endpoint's answer in short: its `version`, then up to three more of its plain fields."""
    found: Mapping[str, Any] | None = t["version"]
    if not found:
        return "–"
    plain = [(k, v) for k, v in found.items() if k != "version" and isinstance(v, str | int | float)][:3]
    extra = ", ".join(f"{k} {v}" for k, v in plain)
    text = str(found.get("version", "")) + (f" ({extra})" if extra else "")
    return f"{text.strip()} from {t['version_url']}"


def headline(summary: Summary) -> str | None:
    """The machine and the versions in one line (None: the run did not record them)."""
    env = summary.get("environment")
    if not env:
        return None
    c, t = env["client"], env["target"]
    gpus = f", GPUs: {_gpus(c)}" if c["gpus"] is not None else ""
    client = f"client {c['host']}: {_machine(c)}{gpus}, {c['os']}, Python {c['python']}, harness {c['harness']}"
    server = f"server: {t['server_header'] or '?'}" + (f", version {_version(t)}" if t["version"] else "")
    return f"{client} · {server}"


def table(summary: Summary) -> Table | None:
    env = summary.get("environment")
    if not env:
        return None
    c, t = env["client"], env["target"]
    packages = ", ".join(f"{name} {version or '–'}" for name, version in c["packages"].items())
    rows = [
        ["client machine", f"{c['host']}: {_machine(c)}"],
        ["client OS", f"{c['os']} ({c['kernel']})"],
        ["client GPUs", _gpus(c)],
        ["Python", c["python"]],
        ["harness", f"{c['harness'] or '–'} ({packages})"],
        ["target models", ", ".join(t["models"]) if t["models"] is not None else "–"],
        ["target Server header", t["server_header"] or "–"],
        ["target version", _version(t)],
    ]
    if t["errors"]:
        rows.append(["not read", "; ".join(t["errors"])])
    return Table(["", ""], rows, [False, False])
