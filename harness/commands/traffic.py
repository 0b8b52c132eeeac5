"""`harness bench`'s real-traffic options: multi-turn sessions, shared prefixes and timestamped trace replay.

Parsed once, with the other options, into the `BenchConfig`'s `sessions`, `prompts.prefix` and `trace`
(`harness.commands.bench.config_of`); a trace file is read and checked here, whole, before any server starts or any
request is sent. Options that cannot go together are refused with the reason (ValueError: exit code 2).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from harness.load import traces
from harness.load.conversation import SessionSpec
from harness.load.plan import StepPlan
from harness.load.prompts import LengthDistribution, SharedPrefix


def _seconds(text: str) -> LengthDistribution:
    return LengthDistribution.parse(text, zero=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options' group; `--session-rate` is added to the load modes by `harness.commands.bench` itself."""
    group = parser.add_argument_group("real traffic: multi-turn sessions, shared prefixes, trace replay")
    group.add_argument(
        "--turns",
        metavar="N|DIST|all",
        help="multi-turn sessions of this many turns (same forms as --input-tokens, which becomes each turn's new "
        "user tokens); with --sharegpt or --prompts, at most this many turns of each conversation ('all': every "
        "one). --concurrency N: N users running sessions back to back; --session-rate R: R session starts per s",
    )
    group.add_argument(
        "--think-time",
        type=_seconds,
        metavar="S|DIST",
        help="seconds a session's user waits after an answer before the next turn (same forms, 0 allowed; default 0)",
    )
    group.add_argument(
        "--session-header",
        metavar="NAME",
        help="send each turn with the header NAME: <run id>-<session> (session affinity for routers)",
    )
    group.add_argument(
        "--shared-prefix-tokens",
        type=int,
        metavar="P",
        help="synthetic prompts (or each session's first turn) start with a prefix of P tokens shared within a group",
    )
    group.add_argument("--prefix-groups", type=int, metavar="G", help="how many distinct shared prefixes (default 1)")
    group.add_argument("--trace", type=Path, metavar="FILE", help="replay a trace at its own times (one open loop)")
    group.add_argument("--trace-format", choices=traces.FORMATS, help="the trace's format")
    group.add_argument(
        "--time-scale", type=float, metavar="X", help="multiply the trace's times by X (0.5: twice as fast; default 1)"
    )
    group.add_argument("--trace-start", type=float, metavar="S", help="replay from S seconds of the trace's clock")
    group.add_argument("--trace-stop", type=float, metavar="S", help="replay up to S seconds of the trace's clock")


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the options ask of the workload beyond single requests."""

    sessions: SessionSpec | None = None
    prefix: SharedPrefix | None = None
    trace: traces.Replay | None = None


def traffic_of(args: argparse.Namespace) -> Traffic:
    """The real-traffic options, checked against each other and the load and prompt options (ValueError)."""
    if args.trace is not None:
        return Traffic(trace=_replay(args))
    for given, name in ((args.trace_format, "--trace-format"), (args.time_scale, "--time-scale"),
                        (args.trace_start, "--trace-start"), (args.trace_stop, "--trace-stop")):  # fmt: skip
        if given is not None:
            raise ValueError(f"{name} needs --trace")
    sessions = _sessions(args)
    if args.prefix_groups is not None and args.shared_prefix_tokens is None:
        raise ValueError("--prefix-groups needs --shared-prefix-tokens")
    prefix = None
    if args.shared_prefix_tokens is not None:
        if sessions is None and (args.prompts or args.sharegpt):
            raise ValueError("shared prefixes are for synthetic prompts (or sessions), not --prompts or --sharegpt")
        prefix = SharedPrefix(args.shared_prefix_tokens, args.prefix_groups or 1)
    return Traffic(sessions, prefix)


def _sessions(args: argparse.Namespace) -> SessionSpec | None:
    if args.turns is None and args.session_rate is None:
        for given, name in ((args.think_time, "--think-time"), (args.session_header, "--session-header")):
            if given is not None:
                raise ValueError(f"{name} is for sessions: add --turns")
        return None
    files = args.prompts or args.sharegpt
    if (args.turns is None or args.turns == "all") and not files:
        raise ValueError("synthetic sessions need a number of turns (--turns N or a distribution)")
    turns = None if args.turns in (None, "all") else LengthDistribution.parse(args.turns)
    if args.rate is not None or args.ramp is not None or args.sweep_rate:
        raise ValueError("sessions start at a rate with --session-rate, not --rate, --ramp or --sweep-rate")
    think = args.think_time if args.think_time is not None else LengthDistribution("fixed", 0.0)
    return SessionSpec(turns, think, args.session_header or None)


def _replay(args: argparse.Namespace) -> traces.Replay:
    others = {
        "--concurrency": args.concurrency, "--rate": args.rate, "--sweep-concurrency": args.sweep_concurrency,
        "--sweep-rate": args.sweep_rate, "--ramp": args.ramp, "--session-rate": args.session_rate,
        "--duration": args.duration, "--requests": args.requests, "--prompts": args.prompts,
        "--sharegpt": args.sharegpt, "--turns": args.turns, "--shared-prefix-tokens": args.shared_prefix_tokens,
    }  # fmt: skip
    clash = [name for name, value in others.items() if value]
    if clash:
        raise ValueError(f"--trace sets the schedule and the lengths: drop {', '.join(clash)} (see --trace-start, "
                         "--trace-stop and --time-scale)")  # fmt: skip
    if args.trace_format is None:
        raise ValueError(f"--trace needs --trace-format ({', '.join(traces.FORMATS)})")
    requests = traces.read(args.trace, args.trace_format)
    scale = 1.0 if args.time_scale is None else args.time_scale
    return traces.Replay(args.trace, args.trace_format, requests, scale, args.trace_start, args.trace_stop)


def plans(traffic: Traffic, template: StepPlan, steps: tuple[StepPlan, ...]) -> tuple[StepPlan, ...]:
    """The steps for the workload: a trace's one step, or the steps asked with sessions starting at each arrival."""
    if traffic.trace is not None:
        return (traffic.trace.plan(template),)
    if traffic.sessions is not None:
        return tuple(replace(s, per="session") for s in steps)
    return steps
