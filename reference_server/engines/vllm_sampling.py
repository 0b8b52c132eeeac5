"""The contract's sampling options as vLLM's `SamplingParams`, and vLLM's per-token logprobs back as the contract's.

vLLM is imported inside the functions that need it, so that this module imports without vLLM.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reference_server.engines.base import SamplingOptions, StructuredOutput, TokenLogprob

# What vLLM's OpenAI server writes for a log probability of -inf (a token that cannot follow): JSON has no -inf.
MIN_LOGPROB = -9999.0


def sampling_params(sampling: SamplingOptions) -> Any:
    """vLLM `SamplingParams` streaming deltas for `sampling`."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    return SamplingParams(
        n=1,
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        stop=list(sampling.stop) or None,
        seed=sampling.seed,
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
        ignore_eos=sampling.ignore_eos,
        min_tokens=sampling.min_tokens,
        logprobs=sampling.logprobs,
        structured_outputs=None if sampling.structured is None else structured_outputs(sampling.structured),
        output_kind=RequestOutputKind.DELTA,
    )


def structured_outputs(structured: StructuredOutput) -> Any:
    """vLLM's guided decoding for `structured`: a JSON Schema, or any JSON object (JSON mode) without one."""
    from vllm.sampling_params import StructuredOutputsParams

    if structured.schema is None:
        return StructuredOutputsParams(json_object=True)
    # As a JSON string: the schema may hold read-only mappings, which vLLM would otherwise have to copy.
    return StructuredOutputsParams(json=json.dumps(structured.schema, default=dict))


def token_logprobs(
    token_ids: Sequence[int],
    positions: Sequence[Mapping[int, Any] | None],
    top: int,
    decode: Callable[[int], str],
) -> tuple[TokenLogprob, ...]:
    """The contract's logprobs for the tokens of one delta, from vLLM's (`CompletionOutput.logprobs`).

    vLLM gives each position a dict from token id to `Logprob` that holds the sampled token (with its rank in the
    vocabulary) and the `top` most likely tokens (ranks 1..top): `top + 1` entries when the sampled token is not
    among them, `top` when it is. The alternatives are those ranked 1..top, best first, whether or not one of them
    is the sampled token; the sampled token's own entry gives its text and logprob.
    """
    out: list[TokenLogprob] = []
    for token_id, position in zip(token_ids, positions, strict=True):
        if not position or token_id not in position:
            # The sampler puts the sampled token in; vLLM's own server still guards against a gap, and reports
            # the token with its floor logprob and no alternatives, as here.
            out.append(TokenLogprob(decode(token_id), MIN_LOGPROB))
            continue
        ranked = sorted(position.items(), key=lambda item: (_rank(item[1]), -item[1].logprob))
        sampled = position[token_id]
        out.append(
            TokenLogprob(
                token=_text(sampled, token_id, decode),
                logprob=max(float(sampled.logprob), MIN_LOGPROB),
                top=tuple(
                    (_text(entry, alt_id, decode), max(float(entry.logprob), MIN_LOGPROB))
                    for alt_id, entry in ranked[:top]
                ),
            )
        )
    return tuple(out)


def _rank(entry: Any) -> float:
    return float("inf") if entry.rank is None else float(entry.rank)


def _text(entry: Any, token_id: int, decode: Callable[[int], str]) -> str:
    decoded: str | None = entry.decoded_token
    return decode(token_id) if decoded is None else decoded
