"""Load shapes made of stages; each stage is a load step of the records, announced to the workers as it begins.

Stages are planned from the command-line options when a test starts (so that options edited in the web UI count).
Locust calls `tick` about once a second, so a stage starts within a second of its planned time.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from _llm_run import announce_step
from locust import LoadTestShape


@dataclass(frozen=True, slots=True)
class Stage:
    users: int
    duration_s: float | None  # None: until the test is stopped
    spawn_rate: float
    label: str


def int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 0:
        raise ValueError(f"expected a comma-separated list of user counts, not {text!r}")
    return values


class StagedShape(LoadTestShape):
    abstract = True

    def __init__(self) -> None:
        super().__init__()
        self._stages: list[Stage] | None = None
        self._announced = 0

    def plan(self, options: argparse.Namespace | None) -> list[Stage]:
        raise NotImplementedError

    def stages(self) -> list[Stage]:
        if self._stages is None:
            environment = self.runner.environment if self.runner is not None else None
            self._stages = self.plan(environment.parsed_options if environment is not None else None)
        return self._stages

    def reset_time(self) -> None:
        super().reset_time()
        self._stages = None
        self._announced = 0

    def stage_info(self, index: int) -> tuple[str, int] | None:
        """The label and user count of stage `index` (the first step of a test is announced from this)."""
        stages = self.stages()
        return (stages[index].label, stages[index].users) if index < len(stages) else None

    def tick(self) -> tuple[int, float] | None:
        stages = self.stages()
        elapsed = self.get_run_time()
        end = 0.0
        for index, stage in enumerate(stages):
            if stage.duration_s is not None:
                end += stage.duration_s
            if stage.duration_s is None or elapsed < end:
                if index != self._announced and self.runner is not None:
                    self._announced = index
                    # Before the users change, so that every request of the new stage is counted in its step.
                    announce_step(self.runner.environment, index, stage.label, stage.users)
                return stage.users, stage.spawn_rate
        return None
