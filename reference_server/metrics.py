"""Prometheus metrics of one server, in a registry of its own (servers can share a process in tests), and the
engine's own beside them (on the vLLM engine, vLLM's `vllm:*` families under vLLM's names)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reference_server.engines.base import EngineStats

# Fine enough that a client can tell its TTFT from the server's (the difference is the network and the front end):
# every step of the range a chat server's TTFT usually falls in.
_LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5,
    2.0, 2.5, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip


class _InFlightCollector(Collector):
    """Requests holding a slot, per key name, read from the limiter when scraped (never updated per request)."""

    def __init__(self, in_flight: Callable[[], dict[str, int]]) -> None:
        self._in_flight = in_flight

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "llm_requests_in_flight", "Requests holding a concurrency slot, by key name.", labels=["key"]
        )
        for key, value in sorted(self._in_flight().items()):
            family.add_metric([key], value)
        yield family


class _EngineCollector(Collector):
    def __init__(self, stats: Callable[[], EngineStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self._stats()
        yield GaugeMetricFamily("llm_engine_running_sequences", "Sequences the engine is generating now.", s.running)
        yield GaugeMetricFamily("llm_engine_waiting_sequences", "Sequences queued in the engine.", s.waiting)
        yield GaugeMetricFamily("llm_engine_aborted_requests", "Engine requests aborted since start.", s.aborted_total)
        yield GaugeMetricFamily(
            "llm_engine_finished_requests", "Engine requests generated to their end since start.", s.finished_total
        )


class ServerMetrics:
    def __init__(
        self,
        engine_stats: Callable[[], EngineStats],
        in_flight: Callable[[], dict[str, int]],
        engine_text: Callable[[], bytes] = bytes,
    ) -> None:
        self._engine_text = engine_text
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm_requests", "Requests answered, by endpoint and status.", ["endpoint", "status"], registry=r
        )
        self.rate_limited = Counter("llm_rate_limited", "Requests rejected with 429, by key name.", ["key"], registry=r)
        self.prompt_tokens = Counter("llm_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.prompt_tokens_cached = Counter(
            "llm_prompt_tokens_cached", "Prompt tokens the engine found in its prefix cache.", registry=r
        )
        self.completion_tokens = Counter("llm_completion_tokens", "Completion tokens generated.", registry=r)
        self.ttft = Histogram(
            "llm_time_to_first_token_seconds",
            "Time from request to first token written.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.latency = Histogram(
            "llm_request_duration_seconds",
            "Time from request to last byte written.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        r.register(_EngineCollector(engine_stats))
        r.register(_InFlightCollector(in_flight))

    def render(self) -> bytes:
        """The server's families, then the engine's own (whose names never clash with the server's `llm_*`)."""
        return generate_latest(self.registry) + self._engine_text()
