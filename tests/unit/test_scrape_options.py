"""`--server-metrics`, `--scrape-interval` and `--server-metrics-header` on `harness bench` and `harness run`: parsed
once into the run's `ScrapeConfig`; bad values stop the command with exit code 2 and a clear line, nothing written."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.cli import build_parser, main
from harness.commands import bench, run
from harness.commands.options import scrape_config, scrape_interval, server_metrics
from harness.target.endpoint import Target
from harness.target.telemetry import ScrapeConfig


def test_the_endpoint_is_a_url_auto_or_none() -> None:
    assert server_metrics("none") is None and server_metrics(" NONE ") is None
    assert server_metrics("auto") == "auto"
    assert server_metrics("https://vllm.internal:8000/metrics") == "https://vllm.internal:8000/metrics"
    for bad in ("ftp://host/metrics", "localhost:8000/metrics", "http://", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="an http"):
            server_metrics(bad)


def test_the_interval_is_a_positive_number_of_seconds() -> None:
    assert scrape_interval("0.5") == 0.5 and scrape_interval("10") == 10.0
    for bad in ("0", "-1", "0.01", "x", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="seconds between scrapes"):
            scrape_interval(bad)


@pytest.mark.parametrize("command", ["bench", "run"])
def test_the_options_become_the_runs_scrape_config(command: str) -> None:
    parse = build_parser([command]).parse_args
    assert scrape_config(parse([command])) == ScrapeConfig()
    asked = parse([command, "--server-metrics", "http://10.0.0.5:8000/metrics", "--scrape-interval", "0.25",
                   "--server-metrics-header", "Authorization: Bearer t0k"])  # fmt: skip
    assert scrape_config(asked) == ScrapeConfig(True, "http://10.0.0.5:8000/metrics", 0.25,
                                                (("Authorization", "Bearer t0k"),))  # fmt: skip
    assert scrape_config(parse([command, "--server-metrics", "none"])).enabled is False


def test_bench_and_runs_sweep_carry_it() -> None:
    args = build_parser(["bench"]).parse_args(["bench", "--server-metrics", "none", "--concurrency", "2"])
    assert bench.config_of(args).scrape == ScrapeConfig(enabled=False)
    args = build_parser(["run"]).parse_args(["run", "--scrape-interval", "2"])
    sweep = run.sweep_config(args, Target.of("http://h/v1", ["k"], "m"), run.DEFAULTS["sim"], "r", False)
    assert sweep.scrape == ScrapeConfig(interval_s=2.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--server-metrics", "localhost:8000/metrics"], "--server-metrics: an http(s) URL"),
        (["bench", "--scrape-interval", "0"], "--scrape-interval: seconds between scrapes, at least 0.05"),
        (["run", "--server-metrics", "ftp://x/metrics"], "--server-metrics: an http(s) URL"),
        (["run", "--server-metrics-header", "no colon"], "a header is 'Name: value'"),
    ],
)
def test_bad_values_stop_the_command_with_exit_code_2_and_write_nothing(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--output-dir", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
