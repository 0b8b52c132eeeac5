"""What the reference server says of itself for a run's telemetry: `/metrics` carries the engine's own families after
the server's (on the vLLM engine, vLLM's `vllm:*`), and `/version` names the server, its engine and its library."""

from __future__ import annotations

from importlib import metadata

import aiohttp

from harness.records.server_metrics import parse
from reference_server.engines.base import EngineStats
from reference_server.metrics import ServerMetrics
from tests.integration.conftest import ServerFactory

ENGINE_TEXT = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 7.0
"""


def test_the_engines_own_metrics_follow_the_servers_under_their_own_names() -> None:
    metrics = ServerMetrics(lambda: EngineStats(running=2, waiting=1), dict, lambda: ENGINE_TEXT)
    families = {f.name: f for f in parse(metrics.render().decode())}
    assert families["vllm:num_requests_running"].samples[0].value == 7.0
    assert families["llm_engine_running_sequences"].samples[0].value == 2.0
    assert families["llm_engine_waiting_sequences"].samples[0].value == 1.0


async def test_the_simulator_adds_none_and_version_names_the_server(server_factory: ServerFactory) -> None:
    async with server_factory() as server, aiohttp.ClientSession() as http:
        async with http.get(f"{server.base_url}/metrics") as r:
            names = {f.name for f in parse(await r.text())}
        async with http.get(f"{server.base_url}/version") as r:
            assert r.status == 200
            version = await r.json()
    assert "llm_engine_running_sequences" in names and not any(n.startswith("vllm:") for n in names)
    assert version == {"version": metadata.version("anyscale-loadtest"), "engine": "sim"}
