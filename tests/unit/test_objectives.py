"""The objectives of a search: `--slo` parsed into percentile objectives and per-request SLOs, bad names refused
with a message that says what is known, and how many samples a percentile needs."""

from __future__ import annotations

import math
import re

import pytest

from harness.analysis.objectives import Objective, Objectives, goodput_share, samples_needed
from harness.analysis.slo import Slo


def test_percentile_objectives_and_per_request_slos_parse_side_by_side() -> None:
    found = Objectives.parse("ttft_p99_ms=2000, itl_p99_ms=200,e2e_ms=30000, e2e_from_scheduled_p90_ms=5000")
    assert found.percentiles == (
        Objective("ttft", "p99", 2000.0),
        Objective("itl", "p99", 200.0),
        Objective("e2e_from_scheduled", "p90", 5000.0),
    )
    assert found.per_request == Slo(e2e_ms=30000.0)
    assert found.goodput == 0.95
    assert Objectives.from_dict(found.with_goodput(0.99).as_dict()) == found.with_goodput(0.99)
    assert found.describe() == (
        "TTFT p99 ≤ 2000 ms; ITL p99 ≤ 200 ms; E2E FROM SCHEDULED p90 ≤ 5000 ms; goodput ≥ 95% (e2e_ms ≤ 30000)"
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("ttft_p98_ms=100", "unknown SLO 'ttft_p98_ms'"),
        ("latency_p99_ms=100", "unknown SLO 'latency_p99_ms'"),
        ("ttft_p99=100", "unknown SLO 'ttft_p99'"),
        ("ttft_p99_ms", "unknown SLO 'ttft_p99_ms'"),
        ("ttft_p99_ms=fast", "'fast' is not a number"),
        ("ttft_p99_ms=0", "must be a positive number"),
        ("ttft_ms=-5", "must be a positive number"),
        ("", "at least one objective"),
    ],
)
def test_a_bad_slo_is_refused_naming_what_is_known(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)) as caught:
        Objectives.parse(text)
    if "unknown" in said:
        assert "ttft_p99_ms" in str(caught.value) and "ttft_ms" in str(caught.value)  # the names it knows


def test_a_percentile_needs_the_samples_that_can_show_it_is_met() -> None:
    assert [samples_needed(q) for q in (0.5, 0.9, 0.95, 0.99, 0.999)] == [5, 29, 59, 299, 2995]
    for q in (0.5, 0.9, 0.99):
        n = samples_needed(q)
        assert q**n <= 0.05 < q ** (n - 1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        samples_needed(1.0)


def test_a_trial_lasts_for_its_most_demanding_objective_counting_itl_per_token() -> None:
    assert Objectives.parse("ttft_p99_ms=1").samples_needed(output_tokens=128) == 299
    assert Objectives.parse("itl_p99_ms=1").samples_needed(output_tokens=128) == 20  # 3 by its tokens; 20 at least
    assert Objectives.parse("itl_p99_9_ms=1").samples_needed(output_tokens=11) == math.ceil(2995 / 10)
    assert Objectives.parse("e2e_ms=1").samples_needed(output_tokens=8) == 59  # goodput 95 %
    assert Objectives.parse("e2e_ms=1").with_goodput(0.99).samples_needed(output_tokens=8) == 299


@pytest.mark.parametrize(("text", "share"), [("95%", 0.95), ("0.9", 0.9), (" 99.9% ", 0.999)])
def test_a_share_is_a_percentage_or_a_fraction(text: str, share: float) -> None:
    assert goodput_share(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["0", "100%", "1", "-5%", "most", "150%"])
def test_a_share_outside_zero_and_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="goodput"):
        goodput_share(text)
