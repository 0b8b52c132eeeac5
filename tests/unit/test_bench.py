from __future__ import annotations

import argparse
import gc
from pathlib import Path

import pytest

from harness.analysis import validity
from harness.analysis.summary import summarize
from harness.cli import main
from harness.commands.bench import add_arguments, plans
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
