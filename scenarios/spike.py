"""A spike: a baseline of chat users, a sudden jump, and the baseline again — does the endpoint recover?

Three load steps (baseline, spike, recovery). The spike's users start at once. With a spike above the key's
limit (30 by default) the extra requests are answered 429 (`chat 429`).

    locust -f scenarios/spike.py -H http://127.0.0.1:8000/v1 --api-key KEY --headless \
        --spike-baseline-users 5 --spike-users 30 --spike-baseline-s 60 --spike-s 30

From the whole folder, name its user class: `locust -f scenarios SpikeUser ...`.
"""

from __future__ import annotations

import argparse
from typing import Any

from _llm_shapes import Stage, StagedShape
from _llm_user import LLMUser
from locust import events, task


@events.init_command_line_parser.add_listener
def _options(parser: Any, **_: Any) -> None:
    parser.add_argument("--spike-baseline-users", type=int, default=5, help="users before and after (default 5)")
    parser.add_argument("--spike-users", type=int, default=30, help="users during the spike (default 30)")
    parser.add_argument("--spike-baseline-s", type=float, default=60.0, help="seconds before and after (default 60)")
    parser.add_argument("--spike-s", type=float, default=30.0, help="seconds of the spike (default 30)")


class SpikeUser(LLMUser):
    @task
    def chat(self) -> None:
        self.stream("chat")


class SpikeShape(StagedShape):
    def plan(self, options: argparse.Namespace | None) -> list[Stage]:
        base = int(getattr(options, "spike_baseline_users", 5))
        peak = int(getattr(options, "spike_users", 30))
        base_s = float(getattr(options, "spike_baseline_s", 60.0))
        peak_s = float(getattr(options, "spike_s", 30.0))
        return [
            Stage(base, base_s, max(1.0, float(base)), f"baseline {base} users"),
            Stage(peak, peak_s, max(1.0, float(peak)), f"spike {peak} users"),
            Stage(base, base_s, max(1.0, float(peak)), f"recovery {base} users"),
        ]
