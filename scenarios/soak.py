"""A soak: steady chat load for a long time, recorded in windows so that drift (slower TTFT, leaks, errors that
creep in) shows as a trend across steps.

Users, spawn rate and run time come from Locust's own -u, -r and -t; each `--soak-window-s` is a load step.

    locust -f scenarios/soak.py -H http://127.0.0.1:8000/v1 --api-key KEY --headless -u 20 -r 5 -t 4h \
        --soak-window-s 600 --records reports/locust-soak

From the whole folder, name its user class: `locust -f scenarios SoakUser ...`.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from _llm_shapes import Stage, StagedShape
from _llm_user import LLMUser
from locust import between, events, task

_FOREVER_WINDOWS = 100_000


@events.init_command_line_parser.add_listener
def _options(parser: Any, **_: Any) -> None:
    parser.add_argument("--soak-window-s", type=float, default=300.0, help="seconds per load step (default 300)")


class SoakUser(LLMUser):
    # A little think time: a soak holds a realistic load rather than the most the endpoint takes.
    wait_time = between(0.0, 0.5)

    @task
    def chat(self) -> None:
        self.stream("chat")


class SoakShape(StagedShape):
    use_common_options = True

    def plan(self, options: argparse.Namespace | None) -> list[Stage]:
        users = int(getattr(options, "num_users", None) or 1)
        rate = float(getattr(options, "spawn_rate", None) or users)
        window = float(getattr(options, "soak_window_s", 300.0))
        run_time = getattr(options, "run_time", None)
        count = math.ceil(run_time / window) if run_time else _FOREVER_WINDOWS
        stages = [Stage(users, window, rate, f"window {i + 1} ({users} users)") for i in range(count)]
        if run_time:  # the last window ends with the run
            last = stages[-1]
            stages[-1] = Stage(users, run_time - window * (count - 1), rate, last.label)
        return stages
