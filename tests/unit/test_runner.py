"""The runner against a scripted in-process server: steps in order, every request recorded as it ends with its step
line, calibration that fails stops the run, and a run whose requests fail stops early."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from harness.client.request import ApiKey, ClientConfig
from harness.client.session import Client
from harness.load.plan import StepPlan
from harness.load.progress import Progress
from harness.load.prompts import PromptItem, prepare
from harness.load.runner import CalibrationFailed, Runner, StepOptions, calibrate
from harness.load.stop_rule import StopRule
from harness.records.record import RecordWriter, RunInfo, read_run

from .test_client import GOOD, MODEL, chunk, serve, stream


async def answered(request: web.Request) -> web.StreamResponse:
    return await stream(request, GOOD)


async def refused(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"message": "no", "type": "server_error", "param": None, "code": None}},
                             status=500)  # fmt: skip


async def run(
    tmp_path: Path,
    handler: object,
    plans: list[StepPlan],
    stop: StopRule | None = None,
    options: StepOptions | None = None,
) -> Runner:
    async for base_url in serve(handler):  # type: ignore[arg-type]
        config = ClientConfig(base_url=base_url, model=MODEL)
        items = [PromptItem(prompt=f"prompt {i}", max_tokens=3) for i in range(3)]
        info = RunInfo.start("r", target={}, config={})
        async with Client(config, [ApiKey("key-1", "k")], connections=8, origin_ns=info.origin_ns) as client:
            with RecordWriter(tmp_path / "records.jsonl", info) as writer:
                runner = Runner(client, info, prepare(config, items, None, False), writer, Progress(False),
                                stop_rule=stop, options=options)  # fmt: skip
                await runner.execute(plans)
        return runner
    raise AssertionError("unreachable")


async def test_each_step_sends_its_requests_and_writes_them_and_its_step_line(tmp_path: Path) -> None:
    plans = [
        StepPlan(0, "concurrency", concurrency=2, requests=4),
        StepPlan(1, "concurrency", concurrency=1, requests=2),
    ]
    runner = await run(tmp_path, answered, plans)
    kept = read_run(tmp_path / "records.jsonl")
    assert [s.step for s in kept.steps] == [0, 1] and [s.label for s in kept.steps] == [
        "concurrency=2",
        "concurrency=1",
    ]
    assert [r.step for r in kept.requests if not r.warmup] == [0, 0, 0, 0, 1, 1]
    assert all(r.error_kind is None and r.completion_tokens == 3 for r in kept.requests)
    assert sorted({r.user for r in kept.requests if r.step == 0}) == [0, 1]
    assert len(runner.records) == len(kept.requests) and runner.stopped_early is None
    for step in kept.steps:
        assert step.started_ns <= step.measure_start_ns <= step.dispatch_end_ns <= step.ended_ns


async def test_a_run_whose_requests_fail_stops_early_and_runs_no_later_step(tmp_path: Path) -> None:
    plans = [
        StepPlan(0, "concurrency", concurrency=2, requests=40),
        StepPlan(1, "concurrency", concurrency=1, requests=5),
    ]
    runner = await run(tmp_path, refused, plans, StopRule(0.5, window=10, minimum=4))
    kept = read_run(tmp_path / "records.jsonl")
    assert [s.step for s in kept.steps] == [0]
    assert (runner.stopped_early is not None and "HTTP 500" not in (runner.stopped_early or "")) or "500" in (
        runner.stopped_early or ""
    )
    assert kept.steps[0].stopped_early == runner.stopped_early
    assert len(kept.requests) < 40  # it stopped sending once the rule tripped


async def test_a_failed_calibration_request_stops_the_run_before_it_starts() -> None:
    async for base_url in serve(refused):
        config = ClientConfig(base_url=base_url, model=MODEL)
        async with Client(config, [ApiKey("key-1", "k")], connections=2, origin_ns=0) as client:
            with pytest.raises(CalibrationFailed, match="calibration request failed: http_5xx"):
                await calibrate(client, None, seed=0)
        return


async def counting(request: web.Request) -> web.StreamResponse:
    """Counts a prompt as the word count twice plus 7 (its template), as a tokenizer of two tokens a word would."""
    body = await request.json()
    words = len(body["messages"][-1]["content"].split())
    usage = {"prompt_tokens": 2 * words + 7, "completion_tokens": 1, "total_tokens": 2 * words + 8}
    return await stream(request, [chunk("a", "stop", usage), b"data: [DONE]\n\n"])


async def test_calibration_fits_the_targets_token_counts() -> None:
    async for base_url in serve(counting):
        config = ClientConfig(base_url=base_url, model=MODEL)
        async with Client(config, [ApiKey("key-1", "k")], connections=2, origin_ns=0) as client:
            calibration, warnings = await asyncio.wait_for(calibrate(client, None, seed=0), 30)
        assert warnings == [] and calibration.measured
        assert calibration.tokens_per_word == pytest.approx(2.0) and calibration.overhead_tokens == pytest.approx(7.0)
        return
