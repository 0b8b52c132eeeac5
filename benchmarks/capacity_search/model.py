"""The simulator's true capacity for an SLO, from its latency model alone — no search, no measurement.

The model (`reference_server/engines/sim/batch.py`, README "The simulator"): up to `max_num_seqs` (c) requests run
at once, the rest wait in a FIFO queue; a running request's first token comes d0 = `ttft_ms` + `prefill_ms_per_token`
× P after it starts (P prompt tokens), and each of its L − 1 later tokens `itl_ms` × (1 + f (N − 1)) after the one
before, N the requests running then and f the `itl_batch_factor`. A request holds its place for S = d0 + the sum of
its gaps.

Under a constant arrival rate λ below the batch limit every request sees the same periodic pattern of running
counts; by Little's law their mean is N̄ = λ S, and since a gap is linear in N, every request's TPOT (its mean gap)
is itl (1 + f (N̄ − 1)). So for an objective on
- TPOT ≤ T: N̄ = 1 + (T / itl − 1) / f, S = d0 + (L − 1) T, and λ* = N̄ / S;
- E2E ≤ Z (E2E = S): TPOT = (Z − d0) / (L − 1), N̄ from it as above, and λ* = N̄ / Z;
- TTFT ≤ X with X above d0: the batch fills at N̄ = c, where S_c = d0 + (L − 1) itl (1 + f (c − 1)); below
  λ_c = c / S_c nobody waits (TTFT = d0), beyond it the queue grows for as long as the load lasts. λ* = λ_c.
Every λ* is also capped by λ_c: past it, whatever the objective, the queue grows. With every request alike, a
percentile of TPOT or E2E is that one value, so the percentile in the SLO does not move the answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimModel:
    # Few long tokens: the simulator's own timer lateness (its loop wakes up to about a millisecond late, at every
    # token) is then small beside what the model says, and the truth below holds for the server as it runs.
    max_num_seqs: int = 16
    ttft_ms: float = 30.0
    prefill_ms_per_token: float = 0.25
    itl_ms: float = 40.0
    itl_batch_factor: float = 0.5
    prompt_tokens: int = 80
    output_tokens: int = 6

    @property
    def d0_s(self) -> float:
        return (self.ttft_ms + self.prefill_ms_per_token * self.prompt_tokens) / 1000

    def holding_s(self, running: float) -> float:
        """S at a mean of `running` requests in the batch."""
        gap_s = self.itl_ms * (1 + self.itl_batch_factor * (running - 1)) / 1000
        return self.d0_s + (self.output_tokens - 1) * gap_s

    def batch_limit(self) -> float:
        """λ_c: the rate at which the batch is full; beyond it the queue grows without end."""
        return self.max_num_seqs / self.holding_s(self.max_num_seqs)

    def running_at(self, tpot_ms: float) -> float:
        """N̄ at which a request's mean gap is `tpot_ms`."""
        return 1 + (tpot_ms / self.itl_ms - 1) / self.itl_batch_factor

    def tpot_capacity(self, limit_ms: float) -> float:
        running = self.running_at(limit_ms)
        return min(running / (self.d0_s + (self.output_tokens - 1) * limit_ms / 1000), self.batch_limit())

    def e2e_capacity(self, limit_ms: float) -> float:
        tpot_ms = (limit_ms - self.d0_s * 1000) / (self.output_tokens - 1)
        return min(self.running_at(tpot_ms) / (limit_ms / 1000), self.batch_limit())

    def ttft_capacity(self, limit_ms: float) -> float:
        if limit_ms <= self.d0_s * 1000:
            return 0.0
        return self.batch_limit()

    def capacity(self, objective: str, limit_ms: float) -> float:
        """λ* for one objective named as `--slo` names it (`tpot_p95_ms`, …)."""
        metric = objective.split("_p")[0]
        return {"ttft": self.ttft_capacity, "tpot": self.tpot_capacity, "e2e": self.e2e_capacity}[metric](limit_ms)

    def sim_args(self) -> list[str]:
        """The simulator's options for this model (prompt and output lengths are the load's)."""
        return [
            f"--max-num-seqs={self.max_num_seqs}",
            f"--ttft-ms={self.ttft_ms}",
            f"--prefill-ms-per-token={self.prefill_ms_per_token}",
            f"--itl-ms={self.itl_ms}",
            f"--itl-batch-factor={self.itl_batch_factor}",
        ]

    def describe(self) -> str:
        return (
            f"max_num_seqs {self.max_num_seqs}, TTFT {self.ttft_ms:g} ms + {self.prefill_ms_per_token:g} ms × "
            f"{self.prompt_tokens} prompt tokens, ITL {self.itl_ms:g} ms × (1 + {self.itl_batch_factor:g} (N − 1)), "
            f"{self.output_tokens} output tokens; batch full at {self.batch_limit():.3f} req/s"
        )
