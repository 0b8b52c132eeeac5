"""What the benchmarks share, one module per concern.

- `processes`: start a process in its own group, wait until it answers `/health`, stop it; a `Group` of them that is
  stopped whatever the exit; pinning to a CPU.
- `usage`: what a process and the machine use (CPU seconds, resident memory, sockets, TCP states), from /proc.
- `machine`: the description of the machine a result was measured on.
- `results`: `benchmarks/RESULTS.md`, one section per benchmark; the date and command line a result records.
- `stats`: percentiles as the harness reports them (nearest rank).
- `peers`: the one registry of peer tools (vllm bench serve, GuideLLM, AIPerf): how each is installed into its own
  virtual environment and how it is invoked.
- `simulator`: the reference server's simulator with a flat latency model, ground truth for the load generators.
- `harness_cli`: the harness's own command line, run as a subprocess like any other tool.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root: benchmarks run from it (`python -m benchmarks.NAME`), and so do the processes they start."""
