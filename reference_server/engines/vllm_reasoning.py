"""A reasoning model's output split into thinking and answer, by one of vLLM's own reasoning parsers.

The parser is named as on vLLM's server (`--reasoning-parser NAME`: deepseek_r1, qwen3, ...) and driven the way
vLLM's chat serving drives it: one `Parser` per request, fed each delta's text and token ids, told the prompt's
token ids (a template may open the thinking block in the prompt) and when the output is finished (parsers buffer
a possible end marker). So the split is what vLLM's server would send as `reasoning_content` and `content`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ReasoningParserError(ValueError):
    """The reasoning parser is unknown, or cannot work with this model's tokenizer."""


def check_parser_name(name: str) -> None:
    """Fail early, before the engine loads a model, on a name vLLM does not know."""
    from vllm.reasoning import ReasoningParserManager

    try:
        ReasoningParserManager.get_reasoning_parser(name)
    except KeyError:
        known = ", ".join(ReasoningParserManager.list_registered())
        raise ReasoningParserError(f"unknown reasoning parser {name!r}; vLLM has: {known}") from None


class ReasoningSplitter:
    """Makes one `ReasoningStream` per request; built once per engine, with the tokenizer vLLM loaded."""

    def __init__(self, name: str, tokenizer: Any, model_name: str | None = None) -> None:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.parser.parser_manager import ParserManager

        check_parser_name(name)
        try:
            # Also checks the parser against the tokenizer (e.g. deepseek_r1 needs <think> tokens in the vocabulary).
            parser_cls = ParserManager.get_parser(
                reasoning_parser_name=name, model_name=model_name, tokenizer=tokenizer
            )
        except TypeError as exc:
            raise ReasoningParserError(f"reasoning parser {name!r}: {exc}") from exc
        if parser_cls is None:  # cannot happen for a registered name; guards the type
            raise ReasoningParserError(f"reasoning parser {name!r} is not available")
        self.name = name
        self._parser_cls = parser_cls
        self._tokenizer = tokenizer
        # The parsers read a few request fields (include_reasoning, template kwargs); a default request is what
        # vLLM's server builds for a chat request that sets none of them. Parsers do not modify it.
        self._request = ChatCompletionRequest.model_validate({"model": model_name or "", "messages": []})

    def stream(self, prompt_token_ids: Sequence[int]) -> ReasoningStream:
        return ReasoningStream(self._parser_cls(self._tokenizer, None), self._request, prompt_token_ids)


class ReasoningStream:
    """The split of one request's output, delta by delta."""

    def __init__(self, parser: Any, request: Any, prompt_token_ids: Sequence[int]) -> None:
        self._parser = parser
        self._request = request
        self._prompt: list[int] | None = list(prompt_token_ids)

    def split(self, text: str, token_ids: Sequence[int], *, finished: bool) -> tuple[str, str]:
        """`(reasoning, answer)` of this delta; either may be empty (a parser may hold text back for later)."""
        # The prompt is looked at on the first delta only, as vLLM's server does.
        prompt, self._prompt = self._prompt, None
        message = self._parser.parse_delta(text, list(token_ids), self._request, prompt, finished=finished)
        if message is None:
            return "", ""
        return message.reasoning or "", message.content or ""
