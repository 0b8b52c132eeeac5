from __future__ import annotations

import argparse
import gc
import re
from pathlib import Path

import pytest

from harness.analysis import validity
from harness.analysis.summary import summarize
from harness.cli import main
from harness.commands.bench import add_arguments, config_of, plans
from harness.load.bench import connections_for as connections
from harness.load.bench import freeze_heap
from harness.report.console import format_table

from .test_metrics import run_file


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_each_load_mode_becomes_its_steps() -> None:
    sweep = plans(parse("--sweep-concurrency", "1,30,40", "--requests", "10", "--seed", "5"))
    assert [(p.mode, p.concurrency, p.requests, p.seed) for p in sweep] == [
        ("concurrency", 1, 10, 5),
        ("concurrency", 30, 10, 6),
        ("concurrency", 40, 10, 7),
    ]
    (rate,) = plans(parse("--rate", "12", "--arrival", "gamma", "--burstiness", "0.5", "--max-concurrency", "8"))
    assert (rate.mode, rate.rate, rate.arrival, rate.burstiness, rate.max_concurrency) == ("rate", 12, "gamma", 0.5, 8)
    assert rate.duration_s == 20.0
    (ramp,) = plans(parse("--ramp", "1:9", "--duration", "30"))
    assert (ramp.mode, ramp.rate, ramp.rate_end, ramp.duration_s) == ("ramp", 1.0, 9.0, 30.0)
    rates = plans(parse("--sweep-rate", "2,4"))
    assert [p.rate for p in rates] == [2.0, 4.0]


def test_connections_cover_the_largest_step_or_are_unlimited_for_an_uncapped_open_loop() -> None:
    assert connections(plans(parse("--sweep-concurrency", "4,48"))) == 52
    assert connections(plans(parse("--rate", "5"))) == 0
    assert connections(plans(parse("--rate", "5", "--max-concurrency", "10"))) == 14


def test_the_table_has_a_row_per_step_and_the_verdict() -> None:
    summary = validity.apply(summarize(run_file()))
    text = format_table(summary)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["step", "ok/total", "err%"]
    assert lines[2].split()[:4] == ["concurrency=2", "2/4", "25.0%", "25.0%"]
    assert "100.0/200.0" in lines[2]
    assert f"run r1: {summary['validity']['verdict']}" in text


def test_freeze_heap_leaves_start_up_objects_out_of_later_collections() -> None:
    try:
        freeze_heap()
        assert gc.get_freeze_count() > 10_000  # the imports' objects: pandas and aiohttp alone bring tens of thousands
    finally:
        gc.unfreeze()


def test_send_ahead_reaches_the_steps_and_a_negative_one_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (rate,) = plans(parse("--rate", "5", "--send-ahead-ms", "20"))
    assert rate.send_ahead_s == 0.02
    argv = ["bench", "--base-url", "http://127.0.0.1:9/v1", "--api-key", "esecret_x", "--model", "m"]
    code = main([*argv, "--rate", "5", "--requests", "2", "--send-ahead-ms", "-1", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "send-ahead time cannot be negative" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no run directory, no records


def test_sessions_start_at_each_arrival_of_the_steps_asked() -> None:
    args = parse("--session-rate", "2", "--turns", "3", "--think-time", "uniform:0,1", "--requests", "5")
    config = config_of(args)
    (step,) = config.plans
    assert (step.mode, step.rate, step.per, step.requests, step.label) == ("rate", 2.0, "session", 5,
                                                                            "session_rate=2/s,poisson")  # fmt: skip
    assert config.sessions is not None and config.sessions.describe() == {
        "turns": "3", "think_s": "uniform:0,1", "header": None
    }  # fmt: skip
    users = config_of(parse("--concurrency", "4", "--turns", "normal:4,1", "--session-header", "x-session-id"))
    assert [(p.mode, p.concurrency, p.per) for p in users.plans] == [("concurrency", 4, "session")]
    assert users.sessions is not None and users.sessions.header == "x-session-id"
    prefixed = config_of(parse("--shared-prefix-tokens", "900", "--prefix-groups", "4", "--input-tokens", "1000"))
    assert prefixed.prompts.prefix is not None and prefixed.prompts.prefix.describe() == {"tokens": 900, "groups": 4}
    assert prefixed.sessions is None and prefixed.plans[0].per == "request"


def test_a_trace_is_one_open_loop_step_without_warm_up(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(f'{{"timestamp": {i * 250}, "input_length": 9, "output_length": 3}}\n' for i in range(5)))
    config = config_of(parse("--trace", str(trace), "--trace-format", "mooncake", "--time-scale", "2"))
    (step,) = config.plans
    assert (step.arrival, step.schedule, step.warmup_s, step.rate) == ("trace", (0.0, 0.5, 1.0, 1.5, 2.0), 0.0, 2.0)
    assert config.trace is not None and config.trace.describe()["requests"] == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--think-time", "1"], "--think-time is for sessions: add --turns"),
        (["--session-header", "x-s"], "--session-header is for sessions"),
        (["--session-rate", "1"], "synthetic sessions need a number of turns"),
        (["--turns", "all"], "synthetic sessions need a number of turns"),
        (["--turns", "3", "--rate", "2"], "sessions start at a rate with --session-rate"),
        (["--turns", "3", "--ramp", "1:2", "--duration", "3"], "sessions start at a rate with --session-rate"),
        (["--prefix-groups", "2"], "--prefix-groups needs --shared-prefix-tokens"),
        (["--time-scale", "2"], "--time-scale needs --trace"),
        (["--trace-start", "2"], "--trace-start needs --trace"),
        (["--trace", "t.jsonl"], "--trace needs --trace-format"),
        (["--trace", "t.jsonl", "--trace-format", "mooncake", "--rate", "3", "--duration", "4"],
         "--trace sets the schedule and the lengths: drop --rate, --duration"),
        (["--trace", "missing.jsonl", "--trace-format", "azure"], "missing.jsonl: No such file"),
        (["--turns", "x"], "bad length distribution 'x'"),
        (["--shared-prefix-tokens", "0"], "a shared prefix needs at least 1 token"),
    ],
)  # fmt: skip
def test_options_that_cannot_go_together_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config_of(parse(*argv))


def test_a_malformed_trace_stops_the_run_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "azure.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,10,2\n2023-11-16 18:15:47,-5,2\n")
    out = tmp_path / "reports"
    code = main(["bench", "--trace", str(trace), "--trace-format", "azure", "--output-dir", str(out), "--no-progress"])
    assert code == 2
    assert f"harness bench: {trace}:3: expected ContextTokens, an integer >= 0, got -5" in capsys.readouterr().err
    assert not out.exists()  # nothing written; no simulator was started, nothing sent
