"""A gate's evaluation of a run: its thresholds, and against a baseline the per-request samples of both runs,
compared statistically (`harness.analysis.regression`) — or, for capacity searches, their answers
(`harness.analysis.capacity.compare`), and for runs both repeated, each figure across runs with its run-to-run spread
(`harness.analysis.repeats.compare`). An input that cannot be judged gives an UNUSABLE verdict.
"""

from __future__ import annotations

from pathlib import Path

from harness.analysis import capacity, regression, repeats
from harness.analysis.frame import latency_samples
from harness.analysis.regression import Comparison, ComparisonSettings
from harness.analysis.shape import Summary
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
            settings = ComparisonSettings.from_table(thresholds.get("regression", {}))
            verdict.comparisons = _compared(baseline, summary, settings) or regression.compare(
                _samples(baseline_path.parent, "baseline"), _samples(summary_path.parent, "run"), settings
            )
    except (Unusable, OSError) as exc:
        verdict.unusable = str(exc)
    return verdict


def _compared(baseline: Summary, summary: Summary, settings: ComparisonSettings) -> list[Comparison] | None:
    """The comparisons of capacity searches (their answers), or of repeated runs (each figure across runs, with the
    run-to-run spread); None for runs compared request by request."""
    base, found = baseline.get("capacity"), summary.get("capacity")
    if base or found:
        if not base or not found:
            raise Unusable("the baseline is not comparable: one run is a capacity search and the other is not")
        if base["mode"] != found["mode"] or base["slo"] != found["slo"]:
            raise Unusable("the baseline is not comparable: its search had another mode or other objectives")
        return [capacity.compare(base, found, settings.min_effect)]
    spread, repeated = baseline.get("repeats"), summary.get("repeats")
    if spread and repeated and min(spread["runs"], repeated["runs"]) >= 2:
        return repeats.compare(spread, repeated, settings)
    return None


def _samples(directory: Path, what: str) -> dict[str, Floats]:
    try:
        rd = rundir.load(directory)
    except (ValueError, OSError) as exc:
        raise Unusable(f"{what}: per-request records are needed beside the summary ({exc})") from exc
    return latency_samples(rd.run)
