"""`harness bench` end to end against the reference server's simulator, started as a subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from harness.cli import main
from harness.records.record import read_run


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


def test_a_reasoning_model_gets_a_time_to_first_output_after_its_first_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, path = bench(
        tmp_path, monkeypatch, "--concurrency", "2", "--requests", "12", "--sim-arg=--reasoning-tokens=4"
    )
    step = summary["steps"][0]
    ttft, ttfo = step["latency_ms"]["ttft"], step["latency_ms"]["ttfo"]
    assert ttfo["count"] == ttft["count"] == step["requests"]["ok"] > 0
    # Four reasoning tokens 2 ms apart come before the answer's first.
    assert ttfo["p50"] > ttft["p50"] + 4 and ttfo["min"] > ttft["min"]
    assert set(ttfo["bounds"]) >= {"p50", "p99"}
    ok = [r for r in read_run(path).requests if r.error_kind is None]
    assert ok and all(r.reasoning_chunks == 4 and len(r.chunk_ns) == 12 for r in ok)
    assert step["tokens"]["completion"]["min"] == 12


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                "required": ["city", "days"],
            },
        },
    }
]


@pytest.mark.parametrize(
    ("options", "fault", "expected"),
    [
        (["--response-format", "json"], None, 0.0),
        (["--response-format", "json"], "json_trailing_text", 1.0),
        (["--tools", "TOOLS", "--tool-choice", "required"], None, 0.0),
        (["--tools", "TOOLS", "--tool-choice", "get_weather"], "tool_args_not_json", 1.0),
    ],
)
def test_structured_outputs_and_tool_calls_are_checked_under_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], fault: str | None, expected: float
) -> None:
    tools = tmp_path / "tools.json"
    tools.write_bytes(orjson.dumps(TOOLS))
    argv = [str(tools) if o == "TOOLS" else o for o in options]
    if fault is not None:
        argv += ["--sim-arg=--enable-faults", "--header", f"x-fault: {fault}"]
    summary, path = bench(
        tmp_path,
        monkeypatch,
        "--concurrency",
        "2",
        "--requests",
        "10",
        "--output-tokens",
        "200",
        "--validate-chunks",
        *argv,
    )
    step = summary["steps"][0]
    assert step["requests"]["ok"] > 0 and step["rates"]["conformance_error"] == 0
    assert step["rates"]["output_error"] == expected
    ok = [r for r in read_run(path).requests if r.error_kind is None]
    judged = [r for r in ok if r.finish_reason != "length"]
    assert judged and all(r.output_error is not None and bool(r.output_error) == bool(expected) for r in judged)
    assert all(r.chunk_ns and r.first_token_ns is not None for r in ok)  # tool-call fragments are timed tokens
