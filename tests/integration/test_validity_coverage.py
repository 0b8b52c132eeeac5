"""The smaller form of `python -m benchmarks.validity_coverage`, in CI: the error bounds hold against ground truth for
an idle client and a starved one, and a starved client's run is never called VALID when its error is beyond
tolerance."""

from __future__ import annotations

from benchmarks import validity_coverage


def test_the_bounds_cover_the_real_error_of_an_idle_and_a_starved_client() -> None:
    outcomes = [validity_coverage.measure(validity_coverage.CONDITIONS[name]) for name in ("idle", "starved")]
    cells = [cell for o in outcomes for _, _, cell, _ in o.cell_rows()]
    assert len(cells) == 2 * len(validity_coverage.METRICS) * len(validity_coverage.STATS)
    covered = sum(cell["covered"] for cell in cells)
    assert covered >= 0.95 * len(cells), validity_coverage.uncovered(outcomes)
    for outcome in outcomes:
        assert outcome.matched > 0.9 * int(outcome.condition.load[3])  # nearly every request was traced
        assert not outcome.false_valid, (outcome.condition.name, outcome.reasons)
