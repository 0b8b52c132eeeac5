"""Deterministic output text: what the simulator "generates" for a prompt, planned before streaming starts."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass

from reference_server.engines.base import FinishReason, SamplingOptions

# Each entry is one token of the simulator's tokenizer (a word with its leading space, or a punctuation mark),
# so re-tokenizing the output gives back the number of tokens generated.
_WORDS = (
    "the of and to in is that it for was on are as with be at by this have from or one had not but what "
    "all were when we there can an your which their said if do will each about how up out them then she "
    "many some so these would other into has more her two like him see time could no make than first been "
    "its who now people my made over did down only way find use may water long little very after words "
    "called just where most know get through back much before go good new write our used me man too any "
    "day same right look think also around another came come work three word must because does part even "
    "place well such here take why things help put years different away again off went old number great "
    "tell men say small every found still between name should home big give air line set own under read "
    "last never us left end along while might next sound below saw something thought both few those "
    "always looked show large often together asked house world going want school important until form "
    "food keep children feet land side without boy once animals life enough took sometimes four head "
    "above kind began almost live page got earth need far hand high year mother light parts country "
    "father let night following picture being study second eyes soon times story boys since white days "
    "ever paper hard near sentence better best across during today others sure means knew why true "
)
_VOCAB: tuple[str, ...] = (*(f" {w}" for w in _WORDS.split()), ".", ",", ".", "!", "?", ";", ":")
# The distinct words, which fill strings and name properties in structured output.
WORDS: tuple[str, ...] = tuple(dict.fromkeys(_WORDS.split()))
# Every distinct token the plain text is made of: where logprobs find the alternatives to a generated token.
VOCAB: tuple[str, ...] = tuple(dict.fromkeys(_VOCAB))


# Real chat models rarely stop after a handful of tokens; neither does the simulator.
_MIN_NATURAL = 8


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole output of one request: its token pieces and how it ends."""

    pieces: tuple[str, ...]
    finish_reason: FinishReason


def request_rng(model: str, prompt: str, sampling: SamplingOptions, salt: str = "") -> random.Random:
    """The random source of one request: fixed at temperature 0 or for a seed, fresh otherwise.

    A `salt` gives a part of the output (reasoning, logprobs) a stream of its own, so that asking for it leaves
    the answer's text as it would be without it.
    """
    if sampling.temperature > 0 and sampling.seed is None:
        return random.Random(os.urandom(8))
    key = f"{model}\x00{prompt}\x00{sampling.seed if sampling.temperature > 0 else ''}{salt}"
    return random.Random(hashlib.blake2b(key.encode(), digest_size=8).digest())


def natural_length(rng: random.Random, mean_length: int) -> int:
    """Where the "model" would emit EOS: drawn around `mean_length`, never below a handful of tokens."""
    return _MIN_NATURAL + int(rng.expovariate(1.0 / max(mean_length - _MIN_NATURAL, 1)))


def plan(model: str, prompt: str, sampling: SamplingOptions, mean_length: int) -> Plan:
    """Tokens for a request: deterministic for temperature 0, or for a given seed.

    The natural length (where the "model" would emit EOS) is drawn around `mean_length`; `max_tokens` cuts it
    (`length`), `ignore_eos` extends it to exactly `max_tokens`, and the first stop string ends the text
    before it.
    """
    rng = request_rng(model, prompt, sampling)
    natural = max(sampling.min_tokens, natural_length(rng, mean_length))
    finish: FinishReason
    if sampling.ignore_eos or natural > sampling.max_tokens:
        count, finish = sampling.max_tokens, "length"
    else:
        count, finish = natural, "stop"
    pieces = rng.choices(_VOCAB, k=count)
    if sampling.stop:
        return apply_stop(pieces, sampling.stop) or Plan(tuple(pieces), finish)
    return Plan(tuple(pieces), finish)


def apply_stop(pieces: list[str], stops: tuple[str, ...]) -> Plan | None:
    """The pieces up to the first stop string, or None when none occurs."""
    text = "".join(pieces)
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if cut < 0:
        return None
    # Keep the tokens up to the one in which the stop string starts; that token is generated (and counted)
    # but only its part before the stop string is returned.
    kept: list[str] = []
    position = 0
    for piece in pieces:
        if position + len(piece) > cut:
            kept.append(piece[: cut - position])
            break
        kept.append(piece)
        position += len(piece)
    return Plan(tuple(kept), "stop")
