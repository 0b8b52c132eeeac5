"""The reference server's simulator with a flat latency model: the load generators' ground truth."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from harness.target.launch import LaunchedServer, launch_reference_server
from schemas import Profile


@contextlib.contextmanager
def simulator(
    ttft_ms: float,
    itl_ms: float,
    *,
    limit: int = 100_000,
    cpu: int | None = None,
    prefill_ms_per_token: float = 0.0,
    profile: Profile = "anyscale",
) -> Iterator[LaunchedServer]:
    """The simulator with no batch slowdown and no prefill cost (unless asked), pinned to `cpu` when given.

    On asyncio's event loop, so that its traces take each request's arrival from the kernel: the time the request
    reached its socket, not the time a loop busy with other streams came round to reading it.
    """
    args = [
        f"--ttft-ms={ttft_ms}",
        f"--itl-ms={itl_ms}",
        "--itl-batch-factor=0",
        f"--prefill-ms-per-token={prefill_ms_per_token}",
        "--max-num-seqs=100000",
    ]
    # Ground truth: each request's arrival as the kernel timed it (the launcher's default, stated because it matters).
    with launch_reference_server(
        concurrency_limit=limit, extra_args=args, profile=profile, event_loop="asyncio"
    ) as server:
        if cpu is not None:
            os.sched_setaffinity(server.process.pid, {cpu})
        yield server
