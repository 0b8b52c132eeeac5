"""The options of a search, of steady state and of repeats: what they become, and bad input refused before anything
runs — one line, exit code 2, nothing written."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.cli import main
from harness.commands.bench import add_arguments, config_of, plans

TARGET = ["--base-url", "http://127.0.0.1:9/v1", "--api-key", "esecret_x", "--model", "m", "--no-preflight"]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_a_search_becomes_its_configuration_and_one_template_step() -> None:
    args = parse("--find-max-rate", "--rate", "3", "--slo", "ttft_p99_ms=2000,itl_p99_ms=200", "--precision", "2%",
                 "--max-trials", "12", "--stop-when-saturated", "--cooldown", "2")  # fmt: skip
    config = config_of(args)
    search = config.search
    assert search is not None
    assert (search.mode, search.start, search.precision, search.max_trials) == ("rate", 3.0, 0.02, 12)
    assert search.trial_requests == 299  # a p99 needs 299 samples (ITL's come 127 a request)
    assert [o.name for o in search.objectives.percentiles] == ["ttft_p99_ms", "itl_p99_ms"]
    assert (config.step_options.stop_when_saturated, config.step_options.cooldown_s) == (True, 2.0)
    assert len(config.plans) == 1
    users = config_of(parse("--find-max-concurrency", "--slo", "e2e_ms=9000", "--goodput", "90%"))
    assert users.search is not None and (users.search.mode, users.search.start) == ("concurrency", 1.0)
    assert users.search.objectives.goodput == 0.9 and users.search.trial_requests == 29


def test_warmup_auto_and_repeats_become_their_steps() -> None:
    (auto,) = plans(parse("--rate", "5", "--warmup", "auto"))
    assert (auto.warmup_auto, auto.warmup_s) == (True, 0.0)
    repeated = plans(parse("--sweep-rate", "2,4", "--repeat", "3", "--seed", "7"))
    assert [(p.index, p.rate, p.repeat) for p in repeated] == [
        (0, 2.0, 0), (1, 4.0, 0), (2, 2.0, 1), (3, 4.0, 1), (4, 2.0, 2), (5, 4.0, 2)
    ]  # fmt: skip
    assert len({p.seed for p in repeated}) == 6
    search = config_of(parse("--find-max-rate", "--slo", "ttft_p99_ms=500", "--warmup", "auto"))
    assert search.search is not None and search.search.trial_requests == 374  # 299, and a fifth more for MSER-5


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--find-max-concurrency"], "not allowed with argument"),
        (["--find-max-rate", "--slo", "speed_p99_ms=1"], "unknown SLO 'speed_p99_ms'"),
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--precision", "0"], "a share above 0 and below 100%"),
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--precision=-5%"], "a share above 0 and below 100%"),
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--max-trials", "0"], "at least 1"),
        (["--rate", "1", "--warmup", "soon"], "seconds or 'auto'"),
        (["--rate", "1", "--repeat", "0"], "at least 1"),
    ],
)
def test_bad_options_are_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", *TARGET, "--output-dir", str(tmp_path), *argv])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--find-max-rate"], "a capacity search needs objectives: --slo"),
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--concurrency", "4"], "--concurrency cannot go with it"),
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--sweep-rate", "1,2"], "--sweep-rate cannot go with it"),
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--duration", "30"], "use --requests to lengthen them"),
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--repeat", "2"], "a capacity search is not repeated"),
        (["--find-max-rate", "--slo", "ttft_p99_ms=1", "--goodput", "99%"], "give some in --slo"),
        (["--rate", "2", "--slo", "ttft_p99_ms=1"], "to hold a run to one, give the gate a threshold"),
        (["--rate", "2", "--precision", "5%"], "--precision belongs to a capacity search"),
        (["--rate", "2", "--goodput", "90%"], "--goodput belongs to a capacity search"),
    ],
)
def test_options_that_cannot_go_together_stop_the_run_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert main(["bench", *TARGET, "--output-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness bench: ") and said in err
    assert list(tmp_path.iterdir()) == []


def test_harness_run_refuses_a_search_without_objectives_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--engine", "sim", "--find-max-rate", "--output-dir", str(tmp_path)]) == 2
    assert "a capacity search needs objectives" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["bench", "run"])
def test_the_help_shows_the_search_options(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "default 95%)" in capsys.readouterr().out
