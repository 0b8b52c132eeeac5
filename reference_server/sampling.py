"""What the engine is asked for a request: its prompt, its sampling options, and each choice's seed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reference_server import tools
from reference_server.engines.base import Engine, ModelCard, Prompt, PromptError, SamplingOptions
from reference_server.errors import bad_request, not_found
from reference_server.faults import FaultPlan
from reference_server.protocol import CompletionRequest


def engine_prompt(engine: Engine, cards: Mapping[str, ModelCard], req: CompletionRequest, plan: FaultPlan) -> Prompt:
    """The prompt's tokens: chat rendered with the model's template, a completion's prompt verbatim."""
    if req.model not in cards:
        raise not_found(f"The model `{req.model}` does not exist.", param="model", code="model_not_found")
    if req.messages is not None:
        # Only `auto` shows the tools to the model; a required or named call is made by guided decoding.
        offered = req.tools if req.tool_choice.mode == "auto" else ()
        try:
            text = engine.apply_chat_template(req.model, req.messages, offered)
        except PromptError as exc:
            raise bad_request(str(exc), param="messages") from None
    else:
        assert req.prompt is not None
        text = plan.completion_prompt(req.model, req.prompt)
    return engine.tokenize(req.model, text)


def sampling_options(context: int, req: CompletionRequest, prompt: Prompt, plan: FaultPlan) -> SamplingOptions:
    """The engine's options for `req`, whose model has a context of `context` tokens."""
    max_tokens = _max_tokens(context, len(prompt.token_ids), req)
    structured = plan.structured(req, tools.guided(req.tool_choice, req.tools) or req.structured)
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        ignore_eos=req.ignore_eos,
        min_tokens=min(req.min_tokens, max_tokens),
        logprobs=req.logprobs,
        structured=structured,
        tools=req.tools if req.tool_choice.mode == "auto" else (),
    )


def _max_tokens(context: int, prompt_tokens: int, req: CompletionRequest) -> int:
    """The output limit: what was asked, or the rest of the context; a request that does not fit is a 400."""
    param = "messages" if req.kind == "chat" else "prompt"
    if req.max_tokens is None:
        if prompt_tokens >= context:
            raise bad_request(
                f"This model's maximum context length is {context} tokens. However, your prompt has "
                f"{prompt_tokens} tokens. Please reduce the length of the {param}.",
                param=param,
                code="context_length_exceeded",
            )
        return context - prompt_tokens
    max_tokens = req.max_tokens
    if prompt_tokens + max_tokens > context:
        raise bad_request(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the {param}, {max_tokens} in the "
            f"completion). Please reduce the length of the {param} or completion.",
            param=param,
            code="context_length_exceeded",
        )
    return max_tokens


def choice_sampling(sampling: SamplingOptions, index: int) -> SamplingOptions:
    """Choice `index` of n: its own seed when the request has one, so that the choices differ reproducibly."""
    if index == 0 or sampling.seed is None:
        return sampling
    seed = sampling.seed + index
    return dataclasses.replace(sampling, seed=seed if seed < 2**63 else sampling.seed - index)
