"""`server_metrics.jsonl`: Prometheus text parsed into families, written and read back, every line valid against
`schemas/server_metrics.json`."""

from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import orjson
import pytest

import schemas
from harness.records import server_metrics
from harness.records.server_metrics import Scrape, Source, parse

EXPOSITION = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 1234.0
# HELP vllm:generation_tokens_created Number of generation tokens processed.
# TYPE vllm:generation_tokens_created gauge
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e+09
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 2.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 5.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 5.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5
# TYPE odd gauge
odd NaN
"""


def test_prometheus_text_becomes_families_with_their_types_and_samples() -> None:
    families = {f.name: f for f in parse(EXPOSITION)}
    assert families["vllm:num_requests_running"].type == "gauge"
    (running,) = families["vllm:num_requests_running"].samples
    assert running == ("vllm:num_requests_running", {"engine": "0", "model_name": "m"}, 3.0)
    assert families["vllm:generation_tokens"].type == "counter"
    assert families["vllm:generation_tokens"].samples[0].name == "vllm:generation_tokens_total"
    histogram = families["vllm:time_to_first_token_seconds"]
    assert histogram.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in histogram.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 2.0, "+Inf": 5.0}


@pytest.mark.parametrize("text", ["<html>404 Not Found</html>", "", "# only a comment\n", "metric{ 1\n"])
def test_what_is_not_prometheus_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not Prometheus text"):
        parse(text)


def test_a_file_round_trips_and_every_line_is_valid(tmp_path: Path) -> None:
    path = tmp_path / server_metrics.SERVER_METRICS_FILE
    source = Source("run-1", "http://127.0.0.1:1/metrics", 0.5, 123_456)
    scrapes = [
        Scrape(1_000, 3_000, 200, None, parse(EXPOSITION), len(EXPOSITION)),
        Scrape(500_000_000, 502_000_000, None, "timed out after 2 s"),
        Scrape(1_000_000_000, 1_001_000_000, 404, "HTTP 404"),
    ]
    server_metrics.write(path, source, scrapes)
    validator = jsonschema.Draft7Validator(schemas.load("server_metrics.json"))
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    for line in lines:
        validator.validate(line)
    assert [line["type"] for line in lines] == ["source", "scrape", "scrape", "scrape"]
    back = server_metrics.read(path)
    assert back is not None
    assert back.source == source
    assert [s.error for s in back.scrapes] == [None, "timed out after 2 s", "HTTP 404"]
    assert back.ok == [back.scrapes[0]]
    assert back.scrapes[0].at_ns == 2_000
    first = {f.name: f for f in back.scrapes[0].families}
    assert (
        first["vllm:time_to_first_token_seconds"]
        == {f.name: f for f in scrapes[0].families}["vllm:time_to_first_token_seconds"]
    )
    (odd,) = first["odd"].samples  # NaN is stored as null (JSON has no NaN) and read back as NaN
    assert math.isnan(odd.value)


def test_reading(tmp_path: Path) -> None:
    assert server_metrics.read(tmp_path / "absent.jsonl") is None
    no_source = tmp_path / "no_source.jsonl"
    scrape = {"type": "scrape", "t_ns": 0, "ended_ns": 1, "status": 200, "error": None, "families": []}
    no_source.write_bytes(orjson.dumps(scrape) + b"\n")
    with pytest.raises(ValueError, match="no source line"):
        server_metrics.read(no_source)
    other = tmp_path / "other.jsonl"
    other.write_bytes(b'{"type": "request"}\n')
    with pytest.raises(ValueError, match="not a source or scrape line"):
        server_metrics.read(other)
