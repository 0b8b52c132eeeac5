"""Known Prometheus families of inference servers, mapped to common names, and their values over a run's scrapes.

vLLM, SGLang, TGI and this project's reference server name the same things differently; `KNOWN` lists, for each
common name, the families that hold it, in order of preference (vLLM's names checked against vLLM 0.32's
`vllm/v1/metrics/loggers.py`, with the older `vllm:gpu_*` names kept; SGLang's and TGI's as their documentation
gives them). The first family a run's scrapes hold is the one read: on the reference server's vLLM engine, vLLM's
own `vllm:*` families win over the server's `llm_*` ones. Every other family stays raw in `server_metrics.jsonl`.

How each kind becomes a series over the successful scrapes (`read`):
- a gauge is its value at each scrape (summed over its series — one per engine or model —, or their maximum or
  mean where a sum means nothing, as for a cache's usage);
- a counter is the running total of its increases: a drop is a restart of the server (the counter counts from 0
  again, so its new value is what was counted since), a series first seen after the first scrape started at 0
  (client libraries create labelled series at their first increment), and a scrape without it adds nothing;
- a histogram is that running total for every bucket (and its sum and count), per upper bound `le`, summed over
  its series: the difference between two scrapes is the distribution of what was observed in between.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.analysis.stats import Floats
from harness.records.server_metrics import Sample, Scrape

Kind = Literal["gauge", "counter", "histogram"]
Combine = Literal["sum", "max", "mean"]


@dataclass(frozen=True, slots=True)
class Known:
    name: str
    kind: Kind
    families: tuple[str, ...]  # in order of preference
    combine: Combine = "sum"  # a gauge's series, at one scrape
    scale: float = 1.0  # to the common unit: histograms in seconds become ms


_MS = 1000.0
_RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size")
_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size")
# A fraction of the KV cache in use (vLLM's "_perc" is a fraction too: 1 means 100 %).
_KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")
_TTFT = ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds")
_E2E = ("vllm:e2e_request_latency_seconds", "sglang:e2e_request_latency_seconds", "tgi_request_duration")
# The reference server's own (`reference_server/metrics.py`), last: on its vLLM engine, vLLM's own come first.
KNOWN: tuple[Known, ...] = (
    Known("running", "gauge", (*_RUNNING, "llm_engine_running_sequences")),
    Known("waiting", "gauge", (*_WAITING, "llm_engine_waiting_sequences")),
    Known("kv_cache_usage", "gauge", _KV_CACHE, "max"),
    # The simulator looks every prompt token up in its prefix cache: its prompt tokens are its queries.
    Known(
        "prefix_cache_queries",
        "counter",
        ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries", "llm_prompt_tokens"),
    ),
    Known(
        "prefix_cache_hits",
        "counter",
        ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits", "llm_prompt_tokens_cached"),
    ),
    Known("prefix_cache_hit_rate", "gauge", ("sglang:cache_hit_rate", "vllm:gpu_prefix_cache_hit_rate"), "mean"),
    Known("preemptions", "counter", ("vllm:num_preemptions",)),
    Known(
        "generation_tokens", "counter", ("vllm:generation_tokens", "sglang:generation_tokens", "llm_completion_tokens")
    ),
    Known("prompt_tokens", "counter", ("vllm:prompt_tokens", "sglang:prompt_tokens", "llm_prompt_tokens")),
    Known("ttft", "histogram", (*_TTFT, "llm_time_to_first_token_seconds"), scale=_MS),
    Known("queue_time", "histogram", ("vllm:request_queue_time_seconds", "tgi_request_queue_duration"), scale=_MS),
    Known("e2e", "histogram", (*_E2E, "llm_request_duration_seconds"), scale=_MS),
)
BY_NAME = {k.name: k for k in KNOWN}


@dataclass(frozen=True, slots=True)
class Histogram:
    """Running totals per scrape: `buckets[i, j]` observations ≤ `les[j]` (the last `le` is +Inf)."""

    les: Floats
    buckets: Floats
    sum: Floats
    count: Floats


@dataclass(frozen=True, slots=True)
class Series:
    """A known metric over the successful scrapes: a gauge's values (NaN where absent), a counter's running total,
    or a histogram's; `family` is the family it was read from."""

    known: Known
    family: str
    values: Floats
    histogram: Histogram | None = None


def _samples(scrape: Scrape, family: str) -> Sequence[Sample] | None:
    return next((f.samples for f in scrape.families if f.name == family), None)


def _present(scrapes: Sequence[Scrape], known: Known) -> str | None:
    names = {f.name for s in scrapes for f in s.families}
    return next((family for family in known.families if family in names), None)


def _gauge(scrapes: Sequence[Scrape], known: Known, family: str) -> Floats:
    out = np.full(len(scrapes), np.nan)
    for i, scrape in enumerate(scrapes):
        values = [s.value for s in _samples(scrape, family) or () if math.isfinite(s.value)]
        if values:
            combined = sum(values) if known.combine == "sum" else max(values)
            out[i] = combined / len(values) if known.combine == "mean" else combined
    return out


def running_total(values: Floats) -> Floats:
    """A counter's readings (NaN: not read) as the running total of its increases since the first scrape."""
    out = np.zeros(len(values))
    total, last = 0.0, math.nan
    for i, value in enumerate(values):
        if math.isfinite(value):
            if math.isnan(last):
                total += value if i > 0 else 0.0
            else:
                total += value - last if value >= last else value
            last = value
        out[i] = total
    return out


Key = tuple[str, tuple[tuple[str, str], ...]]


def _readings(scrapes: Sequence[Scrape], family: str, keep: tuple[str, ...] | None) -> dict[Key, Floats]:
    """Each series of the family (sample name and labels) read at every scrape; `keep`: the name suffixes wanted."""
    out: dict[Key, Floats] = {}
    for i, scrape in enumerate(scrapes):
        for sample in _samples(scrape, family) or ():
            if sample.name.endswith("_created") or (keep is not None and not sample.name.endswith(keep)):
                continue
            key = (sample.name, tuple(sorted(sample.labels.items())))
            out.setdefault(key, np.full(len(scrapes), np.nan))[i] = sample.value
    return out


def _counter(scrapes: Sequence[Scrape], family: str) -> Floats:
    totals = [running_total(v) for v in _readings(scrapes, family, None).values()]
    return np.sum(totals, axis=0) if totals else np.zeros(len(scrapes))


def _le(labels: tuple[tuple[str, str], ...]) -> float | None:
    found = dict(labels).get("le")
    try:
        return None if found is None else float(found)
    except ValueError:
        return None


def histogram_of(scrapes: Sequence[Scrape], family: str) -> Histogram:
    """The family as a histogram over the scrapes: running totals per bucket, sum and count, series summed."""
    n = len(scrapes)
    readings = _readings(scrapes, family, ("_bucket", "_sum", "_count"))
    by_le: dict[float, Floats] = {}
    sums, counts = np.zeros(n), np.zeros(n)
    for (name, labels), values in readings.items():
        total = running_total(values)
        if name.endswith("_bucket") and (le := _le(labels)) is not None:
            by_le[le] = by_le.get(le, np.zeros(n)) + total
        elif name.endswith("_sum"):
            sums += total
        elif name.endswith("_count"):
            counts += total
    les = np.array(sorted(by_le), dtype=np.float64)
    buckets = np.stack([by_le[le] for le in les], axis=1) if len(les) else np.zeros((n, 0))
    return Histogram(les, buckets, sums, counts)


def read(scrapes: Sequence[Scrape]) -> dict[str, Series]:
    """Every known metric the scrapes hold, by common name."""
    out: dict[str, Series] = {}
    for known in KNOWN:
        family = _present(scrapes, known)
        if family is None:
            continue
        if known.kind == "gauge":
            out[known.name] = Series(known, family, _gauge(scrapes, known, family))
        elif known.kind == "counter":
            out[known.name] = Series(known, family, _counter(scrapes, family))
        else:
            histogram = histogram_of(scrapes, family)
            out[known.name] = Series(known, family, histogram.count, histogram)
    return out
