"""Measurements: every server is up for the whole run and measured in interleaved rounds, so that load from
elsewhere on the machine, which comes and goes, falls on all of them alike. What makes a number invalid (the
probes or wrk saw something other than full, successful responses) and what makes it less trustworthy (a busy
machine) is decided here."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from benchmarks.server_capacity.probe import Probe
from benchmarks.server_capacity.servers import OUTPUT_TOKENS
from benchmarks.server_capacity.wrk import LoadResult


@dataclass
class Measurement:
    """One server in one mode: its probe responses and one wrk run per round."""

    probes: list[Probe]
    stream: bool
    runs: list[LoadResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # any of these makes the number invalid
    warnings: list[str] = field(default_factory=list)  # these make it less trustworthy (a busy machine), not wrong

    @property
    def valid(self) -> bool:
        return not self.problems and bool(self.runs)

    @property
    def chunks_per_response(self) -> int:
        return self.probes[0].content_chunks if self.stream else 0

    @property
    def rates(self) -> list[float]:
        """Per round: requests/s, or content chunks/s when streamed."""
        per = self.chunks_per_response if self.stream else 1
        return [run.rate * per for run in self.runs]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.runs else 0.0

    @property
    def responses_per_s(self) -> float:
        return statistics.median(run.rate for run in self.runs) if self.runs else 0.0

    @property
    def cpu_us_per_response(self) -> float:
        requests = sum(run.requests for run in self.runs)
        return 1e6 * sum(run.server_cpu_s for run in self.runs) / requests if requests else 0.0

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs) if self.runs else 0.0


def check_probes(probes: list[Probe], stream: bool) -> list[str]:
    problems: list[str] = []
    if any(p.status != 200 for p in probes):
        problems.append(f"probe answered HTTP {[p.status for p in probes]}")
    if stream:
        if any(p.content_chunks != OUTPUT_TOKENS for p in probes):
            counts = [p.content_chunks for p in probes]
            problems.append(f"probe streams had {counts} content chunks, expected {OUTPUT_TOKENS}")
        if not all(p.done for p in probes):
            problems.append("probe stream did not end with [DONE]")
    elif any(p.completion_tokens not in (None, OUTPUT_TOKENS) for p in probes):
        problems.append(f"probe responses had {[p.completion_tokens for p in probes]} completion tokens")
    return problems


def check_run(m: Measurement, load: LoadResult, connections: int) -> None:
    if load.error_total:
        m.problems.append("wrk errors: " + ", ".join(f"{k}={v}" for k, v in load.errors.items() if v))
    if load.requests == 0:
        m.problems.append("no request completed")
        return
    # wrk's byte count also holds the partial responses in flight when it stops (at most one per connection),
    # so bytes per completed response lie between the probes' sizes and that plus the partials' share. Ids,
    # dates and token texts vary a little in length (the 2 % slack); short or error responses (a missing chunk
    # is ~250 B of ~17 kB) pull the average below the floor.
    per_response = load.bytes / load.requests
    smallest, largest = min(p.wire_bytes for p in m.probes), max(p.wire_bytes for p in m.probes)
    low, high = 0.98 * smallest, 1.02 * largest * (1 + connections / load.requests)
    if not low <= per_response <= high:
        m.problems.append(
            f"wrk read {per_response:.0f} B per completed response; a full response is {smallest}..{largest} B "
            f"(expected {low:.0f}..{high:.0f} B with the partial responses in flight at the end)"
        )


def warn(m: Measurement) -> None:
    server_cpu, load_cpu, other_cpu = m.median("server_cpu"), m.median("load_cpu"), m.median("other_cpu")
    if server_cpu < 0.9:
        m.warnings.append(f"the server used only {server_cpu:.0%} of its core (median): it was not the bottleneck")
    if load_cpu > 0.9:
        m.warnings.append(f"wrk used {load_cpu:.0%} of its core (median): the load tool may be the bottleneck")
    if other_cpu > 0.1:
        m.warnings.append(f"other processes used {other_cpu:.0%} of a core (median): the machine was busy")


@dataclass
class ServerResult:
    server: str
    label: str
    note: str
    plain: Measurement | None = None
    stream: Measurement | None = None
    failure: str = ""

    def mode(self, stream: bool) -> Measurement | None:
        return self.stream if stream else self.plain
