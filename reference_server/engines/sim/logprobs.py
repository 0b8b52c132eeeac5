"""Log probabilities for the simulator's tokens: a plausible, self-consistent distribution at every position.

The simulator picks its tokens without a model, so the distribution is made up after the fact, but it keeps the
properties a client can check: every logprob is ≤ 0, the alternatives are distinct tokens sorted best first, their
probabilities sum to at most 1, and the generated token, when it is among them, appears with its own logprob. At
temperature 0 the generated token is the most likely one, as greedy decoding makes it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from reference_server.engines.base import TokenLogprob
from reference_server.engines.sim.text import VOCAB

# A sampled token further down than this is given this rank: its logprob is then tiny and it is never in the top.
_MAX_RANK = 40


def token_logprobs(pieces: Sequence[str], top: int, rng: random.Random, greedy: bool) -> list[TokenLogprob]:
    """One entry per piece, each with the `top` most likely tokens at its place."""
    return [_one(piece, top, rng, greedy) for piece in pieces]


def _one(piece: str, top: int, rng: random.Random, greedy: bool) -> TokenLogprob:
    # Rank 0 has probability `best`; each later rank a fixed fraction `ratio` of the one before, and all later
    # ranks together share what `best` leaves (a geometric series), so the whole never exceeds 1.
    best = rng.uniform(0.5, 0.98)
    ratio = rng.uniform(0.2, 0.6)

    def logprob(rank: int) -> float:
        p = best if rank == 0 else (1.0 - best) * (1.0 - ratio) * ratio ** (rank - 1)
        return math.log(p)

    rank = 0 if greedy else _sampled_rank(rng, best, ratio)
    others = iter(rng.sample(VOCAB, min(top + 1, len(VOCAB))))
    alternatives: list[tuple[str, float]] = []
    for position in range(top):
        if position == rank:
            alternatives.append((piece, logprob(position)))
            continue
        token = next(others)
        if token == piece:
            token = next(others)
        alternatives.append((token, logprob(position)))
    return TokenLogprob(piece, logprob(rank), tuple(alternatives))


def _sampled_rank(rng: random.Random, best: float, ratio: float) -> int:
    """The rank of a token drawn from the distribution above (inverse transform of the geometric tail)."""
    u = rng.random()
    if u < best:
        return 0
    tail = (u - best) / (1.0 - best)  # uniform in [0, 1) over the tail, whose ranks are geometric
    return min(1 + int(math.log1p(-tail) / math.log(ratio)), _MAX_RANK)
