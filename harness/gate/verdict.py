"""A gate's verdict: its checks and baseline comparisons, and what they make of the run — PASS, FAIL or UNUSABLE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.analysis.regression import Comparison

Status = Literal["pass", "fail", "skip"]


PASS, FAIL, UNUSABLE = 0, 1, 2  # exit codes


class Unusable(Exception):
    """The input cannot be judged (exit 2)."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    value: str
    threshold: str
    detail: str = ""


@dataclass(slots=True)
class Verdict:
    run_id: str
    checks: list[Check] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    unusable: str | None = None
    notes: list[str] = field(default_factory=list)  # what the reader should know, such as another machine

    @property
    def code(self) -> int:
        if self.unusable is not None:
            return UNUSABLE
        failed = any(c.status == "fail" for c in self.checks) or any(c.status == "fail" for c in self.comparisons)
        return FAIL if failed else PASS

    @property
    def word(self) -> str:
        return ("PASS", "FAIL", "UNUSABLE")[self.code]
