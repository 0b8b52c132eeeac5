"""Metrics on hand-built records whose answers are worked out by hand in the comments."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

import schemas
from harness.analysis import validity
from harness.analysis.accuracy import timing_errors
from harness.analysis.frame import itl_samples
from harness.analysis.slo import Slo
from harness.analysis.stats import distribution, jain_index
from harness.analysis.summary import summarize
from harness.records.record import Record, RunFile, RunInfo, StepInfo

MS = 1_000_000


def run_file() -> RunFile:
    run = RunInfo("r1", "2024-01-01T00:00:00.000+00:00", 0, 0, target={"model": "m"}, config={})
    step = StepInfo(
        "r1",
        0,
        "concurrency=2",
        "concurrency",
        started_ns=0,
        measure_start_ns=0,
        dispatch_end_ns=200 * MS,
        ended_ns=300 * MS,
        concurrency=2,
        cpu_s=0.15,
        loop_lag_ns=[1 * MS, 2 * MS, 3 * MS],
        loop_lag_interval_ns=20 * MS,
    )
    requests = [
        # TTFT 100; gaps 10 (1 token) and 20 (2 tokens) → ITL 10, 10, 10; TPOT (130−100)/(4−1) = 10; E2E 130.
        Record(
            run_id="r1",
            index=0,
            key="a",
            scheduled_ns=0,
            sent_ns=0,
            headers_ns=5 * MS,
            first_token_ns=100 * MS,
            end_ns=130 * MS,
            chunk_ns=[100 * MS, 110 * MS, 130 * MS],
            chunk_tokens=[1, 1, 2],
            status=200,
            prompt_tokens=10,
            completion_tokens=4,
            attempts=1,
        ),
        # Sent 50 late; TTFT 200; one gap of 30 → ITL 30, TPOT 30; E2E 250 from sent, 300 from scheduled.
        Record(
            run_id="r1",
            index=1,
            key="b",
            scheduled_ns=0,
            sent_ns=50 * MS,
            first_token_ns=250 * MS,
            end_ns=300 * MS,
            chunk_ns=[250 * MS, 280 * MS],
            chunk_tokens=[1, 1],
            status=200,
            prompt_tokens=20,
            completion_tokens=2,
            attempts=1,
            conformance_error_count=1,
            conformance_errors=["bad chunk"],
        ),
        Record(
            run_id="r1",
            index=2,
            key="a",
            scheduled_ns=100 * MS,
            sent_ns=100 * MS,
            end_ns=101 * MS,
            status=429,
            error_kind="rate_limited",
            attempts=1,
        ),
        Record(
            run_id="r1",
            index=3,
            key="b",
            scheduled_ns=200 * MS,
            sent_ns=200 * MS,
            end_ns=210 * MS,
            status=500,
            error_kind="http_5xx",
            attempts=1,
        ),
        # Warm-up: never counted, however slow.
        Record(
            run_id="r1",
            index=4,
            key="a",
            warmup=True,
            scheduled_ns=0,
            sent_ns=0,
            first_token_ns=9000 * MS,
            end_ns=9900 * MS,
            chunk_ns=[9000 * MS],
            chunk_tokens=[1],
            status=200,
            completion_tokens=1,
        ),
    ]
    return RunFile(run, [step], requests)


def summary(slo: Slo | None = None) -> dict[str, Any]:
    return summarize(run_file(), slo)


def test_exact_percentiles_are_nearest_rank() -> None:
    d = distribution(range(1, 101))
    assert d == {
        "count": 100,
        "mean": 50.5,
        "min": 1.0,
        "p50": 50.0,
        "p90": 90.0,
        "p95": 95.0,
        "p99": 99.0,
        "p99_9": 100.0,
        "max": 100.0,
    }


def test_an_empty_distribution_has_a_count_and_nothing_else() -> None:
    d = distribution([])
    assert d["count"] == 0
    assert d["p99"] is None and d["max"] is None


def test_jain_index_is_one_when_equal_and_one_over_n_when_one_takes_all() -> None:
    assert jain_index([3, 3, 3, 3]) == 1.0
    assert jain_index([1, 0, 0, 0]) == 0.25
    assert jain_index([0, 0]) is None


def test_latencies_of_the_step() -> None:
    lat = summary()["steps"][0]["latency_ms"]
    assert (lat["ttft"]["p50"], lat["ttft"]["max"], lat["ttft"]["mean"]) == (100.0, 200.0, 150.0)
    assert (lat["itl"]["count"], lat["itl"]["p50"], lat["itl"]["p90"], lat["itl"]["mean"]) == (4, 10.0, 30.0, 15.0)
    assert (lat["tpot"]["min"], lat["tpot"]["max"]) == (10.0, 30.0)
    assert (lat["e2e"]["min"], lat["e2e"]["max"]) == (130.0, 250.0)
    assert (lat["e2e_from_scheduled"]["min"], lat["e2e_from_scheduled"]["max"]) == (130.0, 300.0)
    # Every sent request, failed or not: 0, 50, 0, 0.
    assert (lat["dispatch_delay"]["count"], lat["dispatch_delay"]["p50"], lat["dispatch_delay"]["max"]) == (4, 0, 50)


def test_counts_rates_and_throughput_over_the_window() -> None:
    step = summary()["steps"][0]
    # The window runs from the measurement start (0) to the last end (300 ms).
    assert step["window_s"] == 0.3
    assert step["requests"] == {
        "total": 4,
        "ok": 2,
        "errors": 1,
        "rate_limited": 1,
        "throttled": 0,
        "by_error": {"rate_limited": 1, "http_5xx": 1},
    }
    assert step["rates"] == {"error": 0.25, "rate_limited": 0.25, "conformance_error": 0.5, "output_error": None}
    assert step["throughput"]["requests_per_s"] == pytest.approx(2 / 0.3, abs=1e-5)
    assert step["throughput"]["output_tokens_per_s"] == pytest.approx(6 / 0.3, abs=1e-5)
    assert step["throughput"]["input_tokens_per_s"] == pytest.approx(30 / 0.3, abs=1e-5)
    assert step["throughput"]["chunks_per_s"] == pytest.approx(5 / 0.3, abs=1e-5)
    assert step["warmup_requests"] == 1
    assert step["tokens"]["completion"]["max"] == 4.0


def test_without_slos_goodput_is_every_success() -> None:
    step = summary()["steps"][0]
    assert step["goodput_fraction"] == 0.5


@pytest.mark.parametrize(
    "slo",
    [Slo(ttft_ms=150), Slo(e2e_ms=280), Slo(itl_ms=25), Slo(tpot_ms=20), Slo(ttft_ms=500, e2e_ms=299)],
)
def test_each_slo_lets_only_the_first_request_through(slo: Slo) -> None:
    step = summary(slo)["steps"][0]
    assert step["goodput_fraction"] == 0.25
    assert step["throughput"]["goodput_requests_per_s"] == pytest.approx(1 / 0.3, abs=1e-5)


def test_fairness_is_jain_over_output_token_rates_per_key() -> None:
    fairness = summary()["steps"][0]["fairness"]
    # Key a got 4 tokens, key b 2, over the same window: (4 + 2)² / (2 · (4² + 2²)) = 36 / 40.
    assert fairness["jain_index"] == 0.9
    assert fairness["keys"]["a"]["requests"] == 2 and fairness["keys"]["b"]["rate_limited"] == 0


def test_loop_lag_and_cpu_come_from_the_step_line() -> None:
    load = summary()["steps"][0]["load"]
    assert load["loop_lag_ms"]["p50"] == 2.0
    assert load["cpu_utilization"] == 0.5


def test_several_tokens_in_the_first_chunk_have_no_gap_of_their_own() -> None:
    record = Record(chunk_ns=[0, 8 * MS], chunk_tokens=[3, 2])
    assert itl_samples([record]).tolist() == [4.0, 4.0]


def test_slo_parsing() -> None:
    assert Slo.parse("ttft_ms=500, itl_ms=50,e2e_ms=10000") == Slo(ttft_ms=500, itl_ms=50, e2e_ms=10000)
    with pytest.raises(ValueError, match="bad SLO"):
        Slo.parse("latency=5")


def test_the_summary_with_its_verdict_matches_its_schema() -> None:
    result = validity.apply(summary(Slo(ttft_ms=150)))
    jsonschema.Draft7Validator(schemas.load("summary.json")).validate(result)


def test_a_server_slow_to_write_after_stamping_is_not_taken_for_the_client_s_error() -> None:
    # The server stamped its second chunk at 110 ms but its write returned only at 112 ms; the client's kernel
    # stamp says 112.05 ms. Its ITL (12.05 ms) is 2.05 ms off the stamped truth (10 ms), within the client's bound
    # (0.05) and the truth's own (2 ms) together — and without the write's return, it is not.
    from harness.records.truth import Truth

    record = Record(
        run_id="r1",
        request_id="x",
        scheduled_ns=0,
        sent_ns=0,
        written_ns=0,
        first_token_ns=100 * MS,
        end_ns=112 * MS + 50_000,
        chunk_ns=[100 * MS, 112 * MS + 50_000],
        chunk_tokens=[1, 1],
        status=200,
        completion_tokens=2,
        kernel_timed=True,
    )
    bracketed = Truth("x", 0, (100 * MS, 110 * MS), "kernel", 112 * MS, (100 * MS, 112 * MS), 112 * MS)
    cell = timing_errors([record], {"x": bracketed})["cells"]["itl"]["max"]
    assert cell["error"] == pytest.approx(2.05) and cell["bound"] == pytest.approx(0.05) and cell["covered"]
    assert cell["true_bound"] == pytest.approx(2.0)
    stamped_only = Truth("x", 0, (100 * MS, 110 * MS), "kernel", 112 * MS)
    assert not timing_errors([record], {"x": stamped_only})["cells"]["itl"]["max"]["covered"]
