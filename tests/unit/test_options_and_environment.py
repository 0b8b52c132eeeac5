"""The edge's small parsers: shared option types (lists, headers, ramps, sweeps) and the environment's fallbacks."""

from __future__ import annotations

import argparse

import pytest

from harness.commands.options import floats, header, ints, ramp, users
from harness.environment import Environment


def test_lists_of_numbers_skip_empty_items() -> None:
    assert floats("1.5, 2,,3") == [1.5, 2.0, 3.0]
    assert ints("1,30,32,") == [1, 30, 32]
    with pytest.raises(ValueError, match="invalid literal"):
        ints("1,x")


def test_a_header_is_a_name_and_a_value() -> None:
    assert header(" x-fault : stall:500 ") == ("x-fault", "stall:500")
    for bad in ("no colon", ": value"):
        with pytest.raises(argparse.ArgumentTypeError, match="Name: value"):
            header(bad)


def test_a_ramp_is_two_rates() -> None:
    assert ramp("5:50") == (5.0, 50.0)
    with pytest.raises(argparse.ArgumentTypeError, match="START:END"):
        ramp("5")


def test_a_sweep_of_users_needs_at_least_one_user_per_step() -> None:
    assert users("1,8,30") == [1, 8, 30]
    for bad in ("", "0,8", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
            users(bad)


def test_the_environment_gives_the_target_fallbacks_and_whether_ci_runs() -> None:
    env = Environment.read({"ANYSCALE_BASE_URL": "https://h/v1", "ANYSCALE_API_KEY": "esecret_k", "CI": "true"})
    assert env == Environment("https://h/v1", "esecret_k", ci=True)
    assert Environment.read({"ANYSCALE_BASE_URL": "", "CI": "0"}) == Environment()
