"""The marks a step carries wherever it is shown — the page, the Markdown, the terminal: SATURATED, and whether its
sending was stopped for it (`harness.analysis.saturation`)."""

from __future__ import annotations

from harness.analysis.shape import StepSummary


def saturation_mark(step: StepSummary) -> str:
    """SATURATED when the step's queue kept growing, with when its sending was stopped for it ("" otherwise)."""
    found = step.get("saturation")
    if not found or not found["saturated"]:
        return ""
    stopped = found["stopped_at_s"]
    return f"SATURATED (stopped at {stopped:.1f} s)" if found["stopped"] and stopped is not None else "SATURATED"
