"""Runs conformance scenarios one after another in one process, so that the suite's imports are paid once.

`python -m tests.integration.conformance_runs SPECS.json`, where SPECS is a list of scenarios (see
`test_conformance_faults.Scenario`). Each scenario runs against a faults-enabled reference server of its
configuration (or, with `launch`, lets `harness check` start the simulator itself) and leaves `junit.xml`,
`result.json` and `exit_code` in its `out` directory.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from harness.commands import check

# Fast tokens, and decode steps that slow down as streams pile up, so that 30 held streams cost little CPU.
from harness.conformance.launch import FAST_SIM
from harness.target.endpoint import Target
from harness.target.launch import launch_reference_server


def run(spec: dict[str, Any], servers: Servers) -> int:
    args = ["--output-dir", spec["out"], "--release-timeout", "2", "--profile", spec["suite_profile"], "-q"]
    if spec["fault"]:
        args += ["--extra-header", f"x-fault: {spec['fault']}"]
    if spec["launch"]:
        return check.main(args)
    t = servers.get(spec["server_profile"], spec["server_limit"])
    assert t.api_key_2 is not None
    return check.main([*args, "--base-url", t.base_url, "--api-key", t.api_key, "--api-key-2", t.api_key_2])


class Servers:
    """One simulator per configuration, shared by the scenarios that need it: a fault is chosen per request, and
    every fault's damage ends when the key has nothing in flight, as it has at the end of a run."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        self.running: dict[tuple[str, int], Target] = {}

    def get(self, profile: str, limit: int) -> Target:
        if (profile, limit) not in self.running:
            server = self.stack.enter_context(
                launch_reference_server(
                    profile=profile,  # type: ignore[arg-type]
                    concurrency_limit=limit,
                    extra_args=["--enable-faults", *FAST_SIM],
                    startup_timeout_s=120,
                )
            )
            self.running[profile, limit] = server.target
        return self.running[profile, limit]


def main(argv: list[str]) -> int:
    with contextlib.ExitStack() as stack:
        servers = Servers(stack)
        for spec in json.loads(Path(argv[0]).read_text(encoding="utf-8")):
            print(f"=== scenario {spec['name']}", flush=True)
            code = run(spec, servers)
            Path(spec["out"], "exit_code").write_text(str(code), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
