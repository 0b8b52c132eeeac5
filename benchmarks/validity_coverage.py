"""Do the error bounds hold? Every statistic `harness bench` reports, against the simulator's ground truth.

For each condition — an idle client, an open loop, 256 streams, uvloop (reads timed by the loop, not the kernel), and
a starved client (pinned with `taskset` to one CPU shared with a CPU burner; the simulator on the other) — it runs
`harness bench` against the simulator with `--trace-timing`, fetches the traces, and summarizes the run as `harness
report` does. Each (condition, metric, statistic) cell compares the measured statistic with the true one over the
same requests (`timing_error_ms.cells`, computed by `harness.analysis.accuracy`):

- covered: |measured − true| ≤ the client's bound + the truth's own (the simulator brackets each write);
- beyond tolerance: the error that is the client's (|measured − true| − the truth's own) exceeds the metric's
  tolerance (the larger of 1 ms and 1 % of the value);
- flagged: the bound exceeds the tolerance (a judged statistic: the mean and the percentiles that are not the max).
A false VALID is a run judged VALID with a judged cell beyond tolerance; a false INVALID cell is flagged but within
it. Goal: coverage ≥ 95 % of cells, no false VALID in the starved conditions.

    python -m benchmarks.validity_coverage [--conditions idle,open,256,uvloop,starved,starved-256] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.support import ROOT
from benchmarks.support.harness_cli import bench_argv
from benchmarks.support.machine import load_average, machine
from benchmarks.support.processes import Group, pinned
from benchmarks.support.results import now_utc, update_section
from benchmarks.support.simulator import simulator
from harness.analysis import validity
from harness.analysis.shape import TruthCell, Worst
from harness.analysis.summary import build_summary
from harness.records import rundir, truth
from harness.target import traces
from harness.target.endpoint import Target

METRICS = ("ttft", "itl", "tpot", "e2e")
STATS = ("mean", "p50", "p90", "p95", "p99", "p99_9", "max")
SECTION = "## Validity: do the error bounds cover the real error? (issue 16)"
CLIENT_CPU, SERVER_CPU = 1, 0


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    load: tuple[str, ...]  # harness bench's load options
    starved: bool = False
    extra: tuple[str, ...] = ()
    about: str = ""


CONDITIONS = {
    c.name: c
    for c in (
        Condition("idle", ("--concurrency", "32", "--requests", "128"), about="closed loop, 32 streams"),
        Condition("open", ("--rate", "40", "--requests", "200"), about="Poisson 40 req/s (~26 streams in flight)"),
        Condition("256", ("--concurrency", "256", "--requests", "768"), about="closed loop, 256 streams"),
        Condition(
            "uvloop",
            ("--concurrency", "64", "--requests", "256"),
            extra=("--uvloop",),
            about="closed loop, 64 streams, --uvloop",
        ),
        Condition(
            "starved",
            ("--concurrency", "64", "--requests", "256"),
            starved=True,
            about="64 streams, client sharing its CPU with a burner",
        ),
        Condition(
            "starved-256",
            ("--concurrency", "256", "--requests", "512"),
            starved=True,
            about="256 streams, client sharing its CPU with a burner",
        ),
    )
}


@dataclass(slots=True)
class Outcome:
    condition: Condition
    verdict: str
    cells: Mapping[str, Mapping[str, TruthCell]]
    reasons: list[str]
    worst: Worst | None
    matched: int
    load_avg: str
    judged: dict[str, set[str]] = field(default_factory=dict)  # metric → statistics the verdict judged

    def cell_rows(self) -> Iterator[tuple[str, str, TruthCell, bool]]:
        for metric in METRICS:
            for stat in STATS:
                if (cell := self.cells.get(metric, {}).get(stat)) is not None:
                    yield metric, stat, cell, stat in self.judged.get(metric, set())

    @staticmethod
    def beyond(cell: TruthCell) -> bool:
        error, true = cell["error"], cell["true"]
        if error is None or true is None:
            return False
        own = max(0.0, error - (cell.get("true_bound") or 0.0))
        return own > validity.LATENCY_TOLERANCE.of(true)

    @staticmethod
    def flagged(cell: TruthCell) -> bool:
        bound, measured = cell["bound"], cell["measured"]
        return bound is not None and measured is not None and bound > validity.LATENCY_TOLERANCE.of(measured)

    @property
    def false_valid(self) -> bool:
        return self.verdict == "VALID" and any(j and self.beyond(c) for _, _, c, j in self.cell_rows())

    @property
    def false_invalid_cells(self) -> int:
        return sum(1 for _, _, c, j in self.cell_rows() if j and self.flagged(c) and not self.beyond(c))


@contextlib.contextmanager
def burner(cpu: int) -> Iterator[None]:
    """A process that keeps `cpu` busy: the client pinned beside it gets about half of that CPU."""
    with Group() as group:
        group.start(pinned([sys.executable, "-c", "while True: pass"], cpu))
        yield


def bench(target: Target, condition: Condition, out: Path) -> Path:
    argv = bench_argv(
        target,
        out,
        condition.name,
        *condition.load,
        "--warmup",
        "0.5",
        "--input-tokens",
        "64",
        "--output-tokens",
        "64",
        "--trace-timing",
        "--no-calibrate",
        *condition.extra,
    )
    subprocess.run(pinned(argv, CLIENT_CPU), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return out / condition.name


def measure(condition: Condition, itl_ms: float = 10.0) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp, simulator(20.0, itl_ms, cpu=SERVER_CPU) as server:
        with burner(CLIENT_CPU) if condition.starved else contextlib.nullcontext():
            directory = bench(server.target, condition, Path(tmp))
        found = asyncio.run(
            traces.fetch(server.target.root_url, server.target.api_key, rundir.load(directory).run.requests)
        )
        truth.write(directory / truth.TRUTH_FILE, found)
        summary = build_summary(rundir.load(directory))
    step = summary["steps"][0]
    judged = {
        metric: {
            s for s in validity.JUDGED if not validity.is_extreme(s, int(step["latency_ms"][metric]["count"] or 0))
        }
        for metric in METRICS
    }
    errors = summary.get("timing_error_ms")
    return Outcome(
        condition,
        summary["validity"]["verdict"],
        errors.get("cells") or {} if errors else {},
        summary["validity"]["reasons"],
        summary["validity"].get("worst"),
        errors["matched"] if errors else 0,
        load_average(),
        judged,
    )


def table(outcomes: Sequence[Outcome]) -> str:
    head = "| condition | verdict | matched | " + " | ".join(f"{m.upper()} covered" for m in METRICS)
    head += " | beyond tolerance | flagged | false VALID | false INVALID cells | load avg |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for o in outcomes:
        per_metric = []
        for metric in METRICS:
            cells = [(c, j) for m, _, c, j in o.cell_rows() if m == metric]
            per_metric.append(f"{sum(c['covered'] for c, _ in cells)}/{len(cells)}")
        beyond = sum(1 for _, _, c, j in o.cell_rows() if j and o.beyond(c))
        flagged = sum(1 for _, _, c, j in o.cell_rows() if j and o.flagged(c))
        lines.append(
            f"| {o.condition.name} ({o.condition.about}) | {o.verdict} | {o.matched} | {' | '.join(per_metric)} | "
            f"{beyond} | {flagged} | {'YES' if o.false_valid else 'no'} | {o.false_invalid_cells} | {o.load_avg} |"
        )
    return "\n".join(lines)


def uncovered(outcomes: Sequence[Outcome]) -> list[str]:
    return [
        f"{o.condition.name} {m} {s}: |{c['measured']:.3f} − {c['true']:.3f}| = {c['error']:.3f} > bound "
        f"{c['bound']:.3f} + truth's {c.get('true_bound') or 0:.3f}"
        for o in outcomes
        for m, s, c, _ in o.cell_rows()
        if not c["covered"]
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conditions", default=",".join(CONDITIONS), help=f"any of {', '.join(CONDITIONS)}")
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--record", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.conditions.split(",") if n.strip()]
    if unknown := [n for n in names if n not in CONDITIONS]:
        p.error(f"unknown condition(s) {', '.join(unknown)}: use {', '.join(CONDITIONS)}")
    started = now_utc()
    outcomes = []
    for name in names:
        outcome = measure(CONDITIONS[name], args.itl_ms)
        print(f"{name}: {outcome.verdict}; " + ("; ".join(outcome.reasons[:2]) or "no reason"), flush=True)
        outcomes.append(outcome)
    cells = [c for o in outcomes for _, _, c, _ in o.cell_rows()]
    covered = sum(c["covered"] for c in cells)
    starved_false_valid = [o.condition.name for o in outcomes if o.condition.starved and o.false_valid]
    summary = (
        f"coverage {covered}/{len(cells)} = {covered / max(1, len(cells)):.1%} of (condition, metric, statistic) "
        f"cells (goal ≥ 95 %); false VALID runs: {sum(o.false_valid for o in outcomes)} "
        f"(starved: {len(starved_false_valid)}, goal 0); false INVALID cells: "
        f"{sum(o.false_invalid_cells for o in outcomes)}"
    )
    text = table(outcomes)
    missed = uncovered(outcomes)
    print(f"\n{text}\n\n{summary}")
    for line in missed:
        print(f"  not covered: {line}")
    if args.record:
        command = "python -m benchmarks.validity_coverage" + (
            "" if names == list(CONDITIONS) else f" --conditions {','.join(names)}"
        )
        section = (
            f"{SECTION}\n\n{started} — {machine()} — `{command}`\n\n"
            f"Simulator TTFT 20 ms, ITL {args.itl_ms:g} ms, 64-token outputs, pinned to CPU {SERVER_CPU}; "
            f"`harness bench` pinned to CPU {CLIENT_CPU}. Cells: {', '.join(STATS)} of {', '.join(METRICS)}; "
            "a statistic's cell is judged when the verdict judges it (not the max, nor a percentile that is the max)."
            "\n\n"
            f"{text}\n\n{summary}\n" + "".join(f"\n- not covered: {line}" for line in missed) + "\n"
        )
        update_section(SECTION, section)
    ok = covered >= 0.95 * len(cells) and not starved_false_valid
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
