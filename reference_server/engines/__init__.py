"""Engines: the simulator (`sim`) and vLLM (`vllm`), behind the contract in `base`."""

from __future__ import annotations

from reference_server.config import ServerConfig
from reference_server.engines.base import Engine


def create_engine(config: ServerConfig) -> Engine:
    """The configured engine; vLLM is imported only when it is the one chosen."""
    if config.engine == "sim":
        from reference_server.engines.sim import SimEngine

        return SimEngine(config.models, config.sim)
    from reference_server.engines.vllm_engine import create_vllm_engine

    engine: Engine = create_vllm_engine(config)
    return engine
