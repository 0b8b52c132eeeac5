"""The options of a capacity search, and of how steps run — saturation, steady state, cool-down, repeats — shared by
`harness bench` and `harness run`: added to their parsers here, and parsed once into the frozen configuration the
load runs with (`harness.load.search.SearchConfig`, `harness.load.runner.StepOptions`).

Every error is a ValueError (or argparse's own) naming the option, raised before anything is sent or written.
"""

from __future__ import annotations

import argparse
import math
from typing import Literal

from harness.analysis import validity
from harness.analysis.capacity import Mode
from harness.analysis.objectives import DEFAULT_GOODPUT, Objectives, goodput_share
from harness.load.runner import StepOptions
from harness.load.search import SearchConfig

AUTO: Literal["auto"] = "auto"
MSER_ALLOWANCE = 1.25  # with --warmup auto a trial sends this much more: MSER-5 usually cuts well under a fifth


def slo(text: str) -> Objectives:
    """`--slo`: percentile objectives and per-request SLOs (`harness.analysis.objectives`)."""
    try:
        return Objectives.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def warmup(text: str) -> float | Literal["auto"]:
    """`--warmup`: seconds, or `auto` (measure from the steady state MSER-5 finds)."""
    if text.strip().lower() == AUTO:
        return AUTO
    return _seconds(text, "or 'auto'")


def share(text: str) -> float:
    """`--precision`, `--goodput`: a share, `5%` or `0.05`, above 0 and below 1."""
    try:
        return goodput_share(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a share above 0 and below 100%, such as 5% or 0.05, not {text!r}") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def _seconds(text: str, alternative: str = "") -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seconds{' ' + alternative if alternative else ''}, not {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"seconds, 0 or more, not {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser, *, concurrency: bool = True, repeat: bool = True) -> None:
    """The options, in a group of their own; `--find-max-concurrency` and `--repeat` only where asked."""
    group = parser.add_argument_group("capacity search, saturation, steady state, repeats")
    find = group.add_mutually_exclusive_group()
    find.add_argument(
        "--find-max-rate",
        action="store_true",
        help="search for the largest request rate meeting --slo (starting from --rate, default 1 req/s)",
    )
    if concurrency:
        find.add_argument(
            "--find-max-concurrency",
            action="store_true",
            help="search for the most users meeting --slo (closed loop, starting from --concurrency, default 1)",
        )
    group.add_argument(
        "--goodput",
        type=share,
        metavar="SHARE",
        help=f"a search's goodput target: the share of requests meeting every per-request SLO (default "
        f"{DEFAULT_GOODPUT:.0%}%)",  # argparse formats help with %: the share's sign doubled
    )
    group.add_argument("--precision", type=share, metavar="SHARE", help="how close a search's bracket gets (5%%)")
    group.add_argument("--max-trials", type=_count, metavar="N", help="a search's trial budget (default 10)")
    group.add_argument(
        "--stop-when-saturated",
        action="store_true",
        help="end a step's sending when its queue keeps growing (in flight and TTFT rising); it is marked SATURATED",
    )
    group.add_argument("--cooldown", type=_seconds, default=0.0, metavar="S", help="seconds idle before each step")
    if repeat:
        group.add_argument(
            "--repeat", type=_count, default=1, metavar="N", help="run the whole plan N times: across-run intervals"
        )


def mode(args: argparse.Namespace) -> Mode | None:
    if args.find_max_rate:
        return "rate"
    return "concurrency" if getattr(args, "find_max_concurrency", False) else None


def _checked(args: argparse.Namespace, found: Mode | None) -> None:
    """Options that mean nothing without a search, or nothing with one."""
    objectives: Objectives | None = args.slo
    if found is None:
        for name in ("goodput", "precision", "max_trials"):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name.replace('_', '-')} belongs to a capacity search (--find-max-rate)")
        if objectives is not None and objectives.percentiles:
            raise ValueError(
                "percentile objectives (such as ttft_p99_ms) are what a capacity search meets (--find-max-rate); "
                "to hold a run to one, give the gate a threshold (ttft_p99_ms_max)"
            )
        return
    if objectives is None:
        raise ValueError("a capacity search needs objectives: --slo ttft_p99_ms=2000,itl_p99_ms=200 (for example)")
    if args.goodput is not None and objectives.per_request is None:
        raise ValueError("--goodput is the share meeting per-request SLOs: give some in --slo (ttft_ms=2000, …)")
    if getattr(args, "repeat", 1) > 1:
        raise ValueError("--repeat repeats a fixed plan; a capacity search is not repeated")


def search_config(
    args: argparse.Namespace, start: float, output_tokens: float, warmup_auto: bool, tolerances: validity.Tolerances
) -> SearchConfig | None:
    """The search the options ask for (None: none); ValueError on options that cannot go together."""
    found = mode(args)
    _checked(args, found)
    if found is None:
        return None
    objectives: Objectives = args.slo
    if args.goodput is not None:
        objectives = objectives.with_goodput(args.goodput)
    requests = max(objectives.samples_needed(output_tokens), getattr(args, "requests", None) or 0)
    if warmup_auto:
        requests = math.ceil(requests * MSER_ALLOWANCE)
    return SearchConfig(
        mode=found,
        objectives=objectives,
        start=start,
        precision=0.05 if args.precision is None else args.precision,
        max_trials=10 if args.max_trials is None else args.max_trials,
        trial_requests=requests,
        tolerances=tolerances,
    )


def step_options(args: argparse.Namespace) -> StepOptions:
    return StepOptions(cooldown_s=args.cooldown, stop_when_saturated=args.stop_when_saturated)
