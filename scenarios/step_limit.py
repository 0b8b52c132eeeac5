"""Steps across the 30-concurrent-requests limit: 10, 20, 30, 40, 50 users of steady chat, one load step each.

Up to 30 users every request is admitted; above, the endpoint answers 429 (`chat 429` in Locust, `rate_limited`
in the records) and TTFT stays flat while throughput stops growing — the knee. Each stage is a step of the
records, so `harness report` shows one row per user count.

    locust -f scenarios/step_limit.py -H http://127.0.0.1:8000/v1 --api-key KEY --headless --step-s 60
    locust -f scenarios StepLimitUser -H http://127.0.0.1:8000/v1 --api-key KEY --headless --step-s 60
"""

from __future__ import annotations

import argparse
from typing import Any

from _llm_shapes import Stage, StagedShape, int_list
from _llm_user import LLMUser
from locust import events, task


@events.init_command_line_parser.add_listener
def _options(parser: Any, **_: Any) -> None:
    parser.add_argument("--step-users", default="10,20,30,40,50", help="users of each step (default 10,20,30,40,50)")
    parser.add_argument("--step-s", type=float, default=60.0, help="seconds per step (default 60)")


class StepLimitUser(LLMUser):
    @task
    def chat(self) -> None:
        self.stream("chat")


class StepLimitShape(StagedShape):
    def plan(self, options: argparse.Namespace | None) -> list[Stage]:
        users = int_list(getattr(options, "step_users", "10,20,30,40,50"))
        seconds = float(getattr(options, "step_s", 60.0))
        # Each step's users start within a second, so that the step measures its load and not a ramp.
        return [Stage(n, seconds, max(1.0, float(n)), f"{n} users") for n in users]
