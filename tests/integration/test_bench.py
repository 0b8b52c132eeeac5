"""`harness bench` end to end against the reference server's simulator, started as a subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from harness.cli import main
from harness.records import read_run


def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[dict[str, Any], Path]:
    monkeypatch.delenv("ANYSCALE_BASE_URL", raising=False)
    monkeypatch.delenv("ANYSCALE_API_KEY", raising=False)
    code = main(
        [
            "bench",
            "--output-dir",
            str(tmp_path),
            "--run-id",
            "run",
            "--no-progress",
            "--sim-arg=--ttft-ms=5",
            "--sim-arg=--itl-ms=2",
            "--output-tokens",
            "12",
            "--input-tokens",
            "32",
            *argv,
        ]
    )
    assert code == 0
    directory = tmp_path / "run"
    summary = orjson.loads((directory / "summary.json").read_bytes())
    jsonschema.Draft7Validator(schemas.load("summary.json")).validate(summary)
    validator = jsonschema.Draft7Validator(schemas.load("record.json"))
    for line in (directory / "records.jsonl").read_bytes().splitlines():
        validator.validate(orjson.loads(line))
    return summary, directory / "records.jsonl"


def test_a_sweep_across_the_limit_meets_429s_only_above_30(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary, path = bench(
        tmp_path,
        monkeypatch,
        "--sweep-concurrency",
        "8,30,40",
        "--duration",
        "1.5",
        "--warmup",
        "0.3",
        "--validate-chunks",
    )
    run = read_run(path)
    rejected = {
        step.step: sum(r.error_kind == "rate_limited" for r in run.requests if r.step == step.step)
        for step in run.steps
    }
    assert rejected[0] == 0 and rejected[1] == 0
    assert rejected[2] > 0
    by_step = {s["concurrency"]: s for s in summary["steps"]}
    assert by_step[8]["requests"]["rate_limited"] == 0 and by_step[30]["requests"]["rate_limited"] == 0
    assert by_step[40]["requests"]["rate_limited"] > 0
    for step in summary["steps"]:
        assert step["requests"]["ok"] > 0
        assert step["requests"]["errors"] == 0
        assert step["rates"]["conformance_error"] == 0
        assert step["latency_ms"]["ttft"]["count"] == step["requests"]["ok"]
        assert step["tokens"]["completion"]["min"] == 12
    ok = [r for r in run.requests if r.error_kind is None]
    assert all(r.chunks_validated > 0 and len(r.chunk_ns) == 12 for r in ok)
    assert all(r.prompt_tokens == 32 for r in ok)


def test_an_open_loop_ramp_in_completion_mode_over_two_keys_with_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, path = bench(
        tmp_path,
        monkeypatch,
        "--ramp",
        "20:60",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--arrival",
        "gamma",
        "--burstiness",
        "0.5",
        "--endpoint",
        "completion",
        "--sim-keys",
        "2",
        "--on-429",
        "retry",
        "--slo",
        "ttft_ms=2000,e2e_ms=5000",
        "--seed",
        "4",
    )
    (step,) = summary["steps"]
    assert step["mode"] == "ramp"
    assert step["requests"]["total"] == step["requests"]["ok"] > 0
    assert set(step["fairness"]["keys"]) == {"key-1", "key-2"}
    assert summary["slo"] == {"ttft_ms": 2000, "e2e_ms": 5000}
    run = read_run(path)
    assert {r.endpoint for r in run.requests} == {"completion"}
    assert run.run.target["endpoint"] == "completion"
    # Built ahead, and written by the pacer no sooner than due.
    assert run.run.config["send_ahead_ms"] == 5.0
    assert all(r.sent_ns is not None and r.sent_ns >= r.scheduled_ns for r in run.requests)
