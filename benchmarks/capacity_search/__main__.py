"""`python -m benchmarks.capacity_search`: the capacity search against the simulator's true capacity for three SLOs,
the saturation test at 2× and 0.7× that capacity over seeded runs, and one search on the vLLM engine.

    python -m benchmarks.capacity_search [--runs 20] [--skip-vllm | --only-vllm] [--no-write]

Run it under the shared heavy-work lock: it takes about half an hour (the vLLM engine loads its model too).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.capacity_search import report, runs
from benchmarks.capacity_search.model import SimModel
from benchmarks.support.machine import machine
from benchmarks.support.results import command, now_utc, update_section

SLOS = (("ttft_p99_ms", 500.0), ("tpot_p95_ms", 120.0), ("e2e_p90_ms", 800.0))
START = 4.0  # req/s: the first trial
PRECISION = "2%"
VLLM_SLO = "ttft_p90_ms=1000,itl_p90_ms=100"
# The default tolerances: the engine shares the two cores with the client, whose writes then return a few ms late,
# beyond the default 1 ms, but a trial is still used when none of those numbers could change its outcome
# (`harness.analysis.capacity.undecided`); `--tolerance` here would hide it if that rule were wrong.
VLLM_TOLERANCE: str | None = None
VLLM_LOAD = ("--input-tokens", "32", "--output-tokens", "16", "--max-trials", "8",
             *(("--tolerance", VLLM_TOLERANCE) if VLLM_TOLERANCE else ()))  # fmt: skip


def searches(model: SimModel, out: Path) -> list[report.Truthful]:
    load = ["--arrival", "constant", "--precision", PRECISION, "--input-tokens", str(model.prompt_tokens),
            "--output-tokens", str(model.output_tokens)]  # fmt: skip
    results = []
    for i, (name, limit) in enumerate(SLOS):
        with runs.simulator(model) as server:  # a fresh simulator for each search
            searched = runs.search(server, out, f"search-{i}", f"{name}={limit:g}", START, load)
        results.append(report.Truthful(searched, model.capacity(name, limit)))
        print(f"{searched.slo}: found {searched.answer} req/s, true {results[-1].true:.3f}, "
              f"{searched.trials} trials, {searched.wall_s:.0f} s", flush=True)  # fmt: skip
    return results


def saturation(model: SimModel, out: Path, count: int) -> tuple[list[runs.Stepped], list[runs.Stepped]]:
    capacity = model.batch_limit()
    with runs.simulator(model) as server:
        over = runs.saturation(server, out, "over", 2 * capacity, count, 20, model)
        under = runs.saturation(server, out, "under", 0.7 * capacity, count, 30, model)
    print(f"2×: {sum(s.saturated for s in over)}/{len(over)} flagged; 0.7×: {sum(s.saturated for s in under)}/"
          f"{len(under)} false alarms", flush=True)  # fmt: skip
    return over, under


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="seeded saturation steps at each load")
    parser.add_argument("--skip-vllm", action="store_true", help="leave the vLLM engine's search out")
    parser.add_argument("--only-vllm", action="store_true", help="only the vLLM engine's search, printed, not written")
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    model = SimModel()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        if args.only_vllm:
            with runs.vllm(out / "vllm-server.log") as server:
                searched = runs.search(server, out, "vllm", VLLM_SLO, 1.0, VLLM_LOAD)
            print(f"{now_utc()} — `{command('benchmarks.capacity_search', argv)}`\n")
            print(report.vllm_part(searched, VLLM_TOLERANCE))
            return 0
        results = searches(model, out)
        over, under = saturation(model, out, args.runs)
        vllm = None
        if not args.skip_vllm:
            with runs.vllm(out / "vllm-server.log") as server:
                vllm = runs.search(server, out, "vllm", VLLM_SLO, 1.0, VLLM_LOAD)
    header = f"{now_utc()} — {machine()} — `{command('benchmarks.capacity_search', argv)}`"
    text = report.section(header, model, results, over, under, vllm, VLLM_TOLERANCE)
    print(text)
    if args.write:
        update_section(report.SECTION, text)
    ok = all(r.met_goal for r in results) and report.saturation_met(over, under)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
