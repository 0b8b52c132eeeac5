"""The harness's own command line, run as a subprocess like any other tool: `harness bench` against a target."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.target.endpoint import Target

HARNESS = [sys.executable, "-m", "harness"]


def bench_argv(target: Target, output_dir: Path | str, run_id: str, *options: str) -> list[str]:
    """`harness bench` against `target` with `options`, writing its run to `output_dir/run_id/`, with no progress
    display (its output goes nowhere)."""
    return [
        *HARNESS,
        "bench",
        "--base-url",
        target.base_url,
        "--api-key",
        target.api_key,
        "--model",
        target.model,
        *options,
        "--no-progress",
        "--output-dir",
        str(output_dir),
        "--run-id",
        run_id,
    ]
