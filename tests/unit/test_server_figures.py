"""The server's metrics mapped to common names and turned into each step's figures, on scrapes built from canned
Prometheus text whose values are known by construction (`vllm_text`: five scrapes, one a second)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis import families, server
from harness.analysis.shape import Distribution
from harness.records.record import Record, StepInfo
from harness.records.server_metrics import Scrape, ServerMetrics, Source, parse
from tests.integration.vllm_telemetry import VLLM_SOURCES

S = 1_000_000_000
RUNNING = [0, 4, 6, 8, 0]
WAITING = [0, 0, 2, 4, 0]
KV_CACHE = [0.0, 0.1, 0.2, 0.3, 0.0]
QUERIES = [100, 200, 300, 500, 600]
HITS = [0, 50, 100, 200, 200]
PREEMPTIONS = [0, 0, 1, 3, 3]
GENERATED = [1000, 1100, 1300, 1500, 1500]
# TTFT observations ≤ 0.1 s, ≤ 0.5 s, ≤ 1 s, all; from scrape 1 to 3: 10 under 0.1 s, 80 in (0.1, 0.5], 10 in (0.5, 1].
TTFT_BUCKETS = [[0, 0, 0, 0], [0, 0, 0, 0], [5, 40, 50, 50], [10, 90, 100, 100], [10, 90, 100, 100]]
TTFT_SUM = [0.0, 0.0, 15.0, 30.0, 30.0]


def vllm_text(i: int, engines: int = 1) -> str:
    """vLLM's exposition at scrape i (two engines split every count evenly)."""
    lines = []
    for name, kind, values in (
        ("vllm:num_requests_running", "gauge", RUNNING),
        ("vllm:num_requests_waiting", "gauge", WAITING),
    ):
        lines += [f"# TYPE {name} {kind}"]
        lines += [f'{name}{{engine="{e}"}} {values[i] / engines}' for e in range(engines)]
    lines += ["# TYPE vllm:kv_cache_usage_perc gauge"]
    lines += [f'vllm:kv_cache_usage_perc{{engine="{e}"}} {KV_CACHE[i] * (e + 1) / engines}' for e in range(engines)]
    for name, values in (
        ("vllm:prefix_cache_queries", QUERIES),
        ("vllm:prefix_cache_hits", HITS),
        ("vllm:num_preemptions", PREEMPTIONS),
        ("vllm:generation_tokens", GENERATED),
    ):
        lines += [f"# TYPE {name}_total counter"]
        lines += [f'{name}_total{{engine="{e}"}} {values[i] / engines}' for e in range(engines)]
        lines += [f"# TYPE {name}_created gauge", f"{name}_created 1.7e9"]
    lines += ["# TYPE vllm:time_to_first_token_seconds histogram"]
    for le, count in zip(("0.1", "0.5", "1.0", "+Inf"), TTFT_BUCKETS[i], strict=True):
        lines.append(f'vllm:time_to_first_token_seconds_bucket{{le="{le}"}} {count}')
    lines += [f"vllm:time_to_first_token_seconds_count {TTFT_BUCKETS[i][-1]}"]
    lines += [f"vllm:time_to_first_token_seconds_sum {TTFT_SUM[i]}"]
    return "\n".join(lines) + "\n"


def scrapes(texts: list[str]) -> ServerMetrics:
    """One scrape a second, each 2 ms long; the window below spans scrapes 1 to 3."""
    built = [Scrape(i * S, i * S + 2_000_000, 200, None, parse(text)) for i, text in enumerate(texts)]
    return ServerMetrics(Source("r", "http://127.0.0.1:1/metrics", 1.0, 0), built)


WINDOW = (1 * S, 3 * S)
STEP = StepInfo("r", 0, "concurrency=8", "concurrency", 0, 1 * S, 3 * S, 4 * S, concurrency=8)


def test_each_common_name_is_read_from_the_first_family_that_holds_it() -> None:
    # The reference server on the vLLM engine exports both: vLLM's own names win over the server's llm_*.
    ours = "# TYPE llm_engine_running_sequences gauge\nllm_engine_running_sequences 99\n"
    found = families.read(scrapes([vllm_text(i) + ours for i in range(5)]).ok)
    shown = ("running", "waiting", "kv_cache_usage", "prefix_cache_queries", "prefix_cache_hits", "preemptions",
             "generation_tokens", "ttft")  # fmt: skip
    assert {name: s.family for name, s in found.items()} == {name: VLLM_SOURCES[name] for name in shown}
    assert found["running"].values.tolist() == RUNNING


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs 3\n# TYPE sglang:num_queue_reqs gauge\n"
            "sglang:num_queue_reqs 2\n# TYPE sglang:token_usage gauge\nsglang:token_usage 0.4\n"
            "# TYPE sglang:cache_hit_rate gauge\nsglang:cache_hit_rate 0.25\n",
            {"running": 3, "waiting": 2, "kv_cache_usage": 0.4, "prefix_cache_hit_rate": 0.25},
        ),
        (
            "# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 5\n# TYPE tgi_queue_size gauge\n"
            "tgi_queue_size 7\n",
            {"running": 5, "waiting": 7},
        ),
        (
            "# TYPE llm_engine_running_sequences gauge\nllm_engine_running_sequences 4\n"
            "# TYPE llm_engine_waiting_sequences gauge\nllm_engine_waiting_sequences 1\n",
            {"running": 4, "waiting": 1},
        ),
        (
            "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.6\n",  # vLLM before the V1 engine
            {"kv_cache_usage": 0.6},
        ),
    ],
    ids=["sglang", "tgi", "reference-server", "older-vllm"],
)
def test_sglang_tgi_and_the_reference_server_map_to_the_same_names(text: str, expected: dict[str, float]) -> None:
    found = families.read(scrapes([text, text]).ok)
    assert {name: series.values[0] for name, series in found.items()} == pytest.approx(expected)


def test_a_counter_is_the_running_total_of_its_increases_through_restarts() -> None:
    nan = math.nan
    # 5 → 8 (+3), then a restart: 2 was counted since (+2), 4 (+2), a failed read (+0), 6 (+2).
    assert families.running_total(np.array([5, 8, 2, 4, nan, 6.0])).tolist() == [0, 3, 5, 7, 7, 9]
    # A series first seen after the first scrape started from 0 (a labelled series created at its first increment).
    assert families.running_total(np.array([nan, 3, 5.0])).tolist() == [0, 3, 5]


def test_a_histogram_restarting_with_the_server_keeps_what_each_bucket_counted() -> None:
    texts = [
        '# TYPE x histogram\nx_bucket{le="1"} 4\nx_bucket{le="+Inf"} 6\nx_count 6\nx_sum 9\n',
        '# TYPE x histogram\nx_bucket{le="1"} 1\nx_bucket{le="+Inf"} 1\nx_count 1\nx_sum 0.5\n',  # restarted
        '# TYPE x histogram\nx_bucket{le="1"} 2\nx_bucket{le="+Inf"} 5\nx_count 5\nx_sum 8.5\n',
    ]
    known = families.Known("x", "histogram", ("x",))
    histogram = families.histogram_of(scrapes(texts).ok, known.families[0])
    assert histogram.les.tolist() == [1.0, math.inf]
    assert histogram.buckets.tolist() == [[0, 0], [1, 1], [2, 5]]
    assert histogram.count.tolist() == [0, 1, 5] and histogram.sum.tolist() == [0, 0.5, 8.5]


def test_quantiles_interpolate_inside_their_bucket_as_prometheus_does() -> None:
    les = np.array([0.1, 0.5, 1.0, math.inf])
    cumulative = np.array([10.0, 90, 100, 100])
    assert server.quantile(les, cumulative, 0.5) == pytest.approx((0.3, 0.1, 0.5))
    assert server.quantile(les, cumulative, 0.99) == pytest.approx((0.95, 0.5, 1.0))
    # In the first bucket the lower bound is 0; in +Inf the value is the largest finite bound, the bucket unbounded.
    assert server.quantile(les, cumulative, 0.05) == pytest.approx((0.05, 0.0, 0.1))
    assert server.quantile(les, np.array([0.0, 0, 1, 3]), 0.9) == (1.0, 1.0, None)
    assert server.quantile(les, np.zeros(4), 0.5) is None


def request(sent_s: float, end_s: float, chunks_s: list[float]) -> Record:
    return Record(sent_ns=round(sent_s * S), end_ns=round(end_s * S), chunk_ns=[round(t * S) for t in chunks_s],
                  chunk_tokens=[1] * len(chunks_s))  # fmt: skip


def test_a_steps_figures_over_its_window_beside_the_clients() -> None:
    scraped = server.Scraped(scrapes([vllm_text(i, engines=2) for i in range(5)]))
    # The client over [1.001 s, 3.001 s] (the scrapes' middles): one request in flight all along and one for 0.5 s;
    # three token chunks inside, one before.
    records = [request(0.5, 3.5, [0.9, 1.5, 2.5]), request(2.0, 2.5, [2.2])]
    client_ttft: Distribution = {"count": 100, "mean": 350.0, "min": 50.0, "p50": 320.0, "p90": 500.0,
                                 "p95": 600.0, "p99": 1000.0, "p99_9": 1000.0, "max": 1000.0}  # fmt: skip
    found = server.figures(scraped, records, [WINDOW], client_ttft)
    assert found is not None
    assert found["window_s"] == pytest.approx(2.0)
    assert found["scrapes"] == 3
    assert found["running"] == {"mean": 6.0, "max": 8.0, "samples": 3}  # two engines' halves summed
    assert found["waiting"] == {"mean": 2.0, "max": 4.0, "samples": 3}
    kv = found["kv_cache_usage"]
    assert kv is not None and kv["max"] == pytest.approx(0.3)  # the fuller engine's, not a sum
    assert found["prefix_cache_hit_rate"] == pytest.approx(150 / 300)
    assert found["preemptions"] == pytest.approx(3)
    assert found["generation_tokens_per_s"] == pytest.approx(400 / 2.0)
    assert found["client_in_flight"] == pytest.approx((2.0 + 0.5) / 2.0)
    assert found["client_output_tokens_per_s"] == pytest.approx(3 / 2.0)
    ttft = found["ttft_ms"]
    assert ttft is not None
    assert ttft["count"] == 100 and ttft["mean"] == pytest.approx(300.0)
    assert (ttft["p50"], ttft["p90"], ttft["p99"]) == pytest.approx((300.0, 500.0, 950.0))
    assert ttft["buckets"]["p99"] == pytest.approx([500.0, 1000.0])
    gap = found["ttft_gap_ms"]
    assert gap is not None
    assert (gap["mean"], gap["p50"], gap["p99"]) == pytest.approx((50.0, 20.0, 50.0))
    assert gap["ranges"]["p50"] == pytest.approx([320.0 - 500.0, 320.0 - 100.0])
    assert found["queue_time_ms"] is None and found["e2e_ms"] is None  # not exported here


def test_a_window_shorter_than_the_interval_takes_the_scrapes_around_it() -> None:
    scraped = server.Scraped(scrapes([vllm_text(i) for i in range(5)]))
    assert scraped.bracket((round(1.2 * S), round(1.4 * S))) == (1, 2)
    found = server.figures(scraped, [], [(round(1.2 * S), round(1.4 * S))], None)
    assert found is not None and found["generation_tokens_per_s"] == pytest.approx(200.0)


def test_windows_the_scrapes_do_not_span_have_no_figures() -> None:
    scraped = server.Scraped(scrapes([vllm_text(0)]))
    assert server.figures(scraped, [], [WINDOW], None) is None
    two = server.Scraped(scrapes([vllm_text(0), vllm_text(1)]))
    assert server.figures(two, [], [(10 * S, 12 * S)], None) is None  # after the last scrape


def test_the_whole_run_pools_every_steps_window() -> None:
    scraped = server.Scraped(scrapes([vllm_text(i) for i in range(5)]))
    found = server.figures(scraped, [], [(0, 1 * S), (3 * S, 4 * S)], None)
    assert found is not None
    assert found["window_s"] == pytest.approx(2.0)
    assert found["generation_tokens_per_s"] == pytest.approx((100 + 0) / 2.0)
    assert found["preemptions"] == pytest.approx(0 + 0)
    running = found["running"]
    assert running is not None and running["samples"] == 4 and running["max"] == 8


def test_the_timeline_gives_each_scrapes_values_and_rates_since_the_one_before() -> None:
    frame = server.timeline(server.Scraped(scrapes([vllm_text(i) for i in range(5)])))
    assert frame["running"].tolist() == RUNNING
    assert np.isnan(frame["generation_tokens_per_s"][0])
    assert frame["generation_tokens_per_s"][1:].tolist() == pytest.approx([100, 200, 200, 0])
    assert frame["prefix_cache_hit_rate"][1:].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.0])
    assert frame["preemptions"][1:].tolist() == [0, 1, 2, 0]


def test_what_was_scraped_is_summarized_with_its_sources() -> None:
    metrics = scrapes([vllm_text(i) for i in range(3)])
    metrics.scrapes.append(Scrape(4 * S, 6 * S, None, "timed out after 2 s"))
    found = server.summary(server.Scraped(metrics))
    assert found["scrapes"] == 4 and found["failed"] == 1 and found["first_error"] == "timed out after 2 s"
    assert found["sources"]["ttft"] == "vllm:time_to_first_token_seconds"
    assert found["families"] == len({f.name for f in metrics.scrapes[0].families})
    assert STEP.step in server.windows([STEP]) and server.windows([STEP])[0] == WINDOW


def test_the_simulators_prefix_cache_is_its_cached_prompt_tokens_over_its_prompt_tokens() -> None:
    def text(i: int) -> str:  # each second 100 prompt tokens, 60 of them found in the cache
        return (
            "# TYPE llm_prompt_tokens_total counter\n"
            f"llm_prompt_tokens_total {100 * i}\n"
            "# TYPE llm_prompt_tokens_cached_total counter\n"
            f"llm_prompt_tokens_cached_total {60 * i}\n"
        )

    scraped = server.Scraped(scrapes([text(i) for i in range(5)]))
    found = server.figures(scraped, [], [WINDOW], None)
    assert found is not None
    assert found["prefix_cache_hit_rate"] == pytest.approx(0.6)
    assert server.summary(scraped)["sources"]["prefix_cache_hits"] == "llm_prompt_tokens_cached"
