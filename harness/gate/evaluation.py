"""A gate's evaluation of a run: its thresholds, and against a baseline the per-request samples of both runs,
compared statistically (`harness.analysis.regression`). An input that cannot be judged gives an UNUSABLE verdict.
"""

from __future__ import annotations

from pathlib import Path

from harness.analysis import regression
from harness.analysis.frame import latency_samples
from harness.analysis.regression import ComparisonSettings
from harness.analysis.stats import Floats
from harness.gate.checks import absolute_checks
from harness.gate.thresholds import load_summary, load_thresholds
from harness.gate.verdict import Unusable, Verdict
from harness.records import rundir


def evaluate(summary_path: Path, thresholds_path: Path | None, baseline_path: Path | None) -> Verdict:
    """The verdict on a run; an unusable input gives a verdict with `unusable` set rather than an exception."""
    verdict = Verdict(run_id=str(summary_path))
    try:
        thresholds = load_thresholds(thresholds_path)
        summary = load_summary(summary_path, "run")
        verdict.run_id = summary["run_id"]
        verdict.checks = absolute_checks(summary, thresholds.get("absolute", {}))
        if baseline_path is not None:
            baseline = load_summary(baseline_path, "baseline")
            verdict.notes = [
                f"measured elsewhere: {note}" for note in regression.environment_differences(baseline, summary)
            ]
            problems = regression.incompatibilities(baseline, summary)
            if problems:
                raise Unusable("the baseline is not comparable: " + "; ".join(problems))
            verdict.comparisons = regression.compare(
                _samples(baseline_path.parent, "baseline"),
                _samples(summary_path.parent, "run"),
                ComparisonSettings.from_table(thresholds.get("regression", {})),
            )
    except (Unusable, OSError) as exc:
        verdict.unusable = str(exc)
    return verdict


def _samples(directory: Path, what: str) -> dict[str, Floats]:
    try:
        rd = rundir.load(directory)
    except (ValueError, OSError) as exc:
        raise Unusable(f"{what}: per-request records are needed beside the summary ({exc})") from exc
    return latency_samples(rd.run)
