"""The calibrated simulator: a continuous-batching latency model with deterministic text."""

from reference_server.engines.sim.engine import SimEngine

__all__ = ["SimEngine"]
