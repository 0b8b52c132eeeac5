from __future__ import annotations

import pytest

from reference_server.engines.base import Message
from reference_server.errors import APIError
from reference_server.protocol import RequestParser

PARSER = RequestParser()


def test_chat_request_with_every_supported_argument() -> None:
    req = PARSER.parse(
        "chat",
        b'{"model": "m", "messages": [{"role": "system", "content": "S"}, '
        b'{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", '
        b'"text": "b"}]}], "stream": true, "stream_options": {"include_usage": true}, '
        b'"max_tokens": 7, "temperature": 0, "top_p": 0.5, "stop": "X", "seed": 3, '
        b'"presence_penalty": 1, "frequency_penalty": -1, "ignore_eos": true, "min_tokens": 2}',
    )
    assert req.messages == (Message("system", "S"), Message("user", "ab"))
    assert (req.stream, req.include_usage, req.max_tokens, req.temperature, req.top_p) == (True, True, 7, 0.0, 0.5)
    assert (req.stop, req.seed, req.presence_penalty, req.frequency_penalty) == (("X",), 3, 1.0, -1.0)
    assert (req.ignore_eos, req.min_tokens, req.prompt) == (True, 2, None)


def test_defaults_and_a_prompt_given_as_a_list() -> None:
    req = PARSER.parse("completion", b'{"model": "m", "prompt": ["<s>[INST] hi [/INST]"], "stop": null}')
    assert req.prompt == "<s>[INST] hi [/INST]" and req.messages is None
    assert (req.stream, req.max_tokens, req.temperature, req.top_p, req.stop) == (False, None, 1.0, 1.0, ())


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b'{"model": "m"}', "prompt", "Missing required parameter 'prompt'"),
        (b'{"model": "m", "prompt": "x", "max_tokens": 0}', "max_tokens", "bigger than or equal to 1"),
        (b'{"model": "m", "prompt": 5}', "prompt", ""),
        (b'{"model": "", "prompt": "x"}', "model", ""),
        (b'{"model": "m", "prompt": "x", "stop": ["a", 2]}', "stop", ""),
    ],
)
def test_schema_violations_name_the_parameter(body: bytes, param: str | None, fragment: str) -> None:
    with pytest.raises(APIError) as caught:
        PARSER.parse("completion", body)
    assert caught.value.status == 400 and caught.value.param == param
    assert fragment in caught.value.message


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b'"s"', b'{"a": Infinity}'])
def test_bodies_that_are_not_a_json_object(body: bytes) -> None:
    with pytest.raises(APIError) as caught:
        PARSER.parse("chat", body)
    assert caught.value.status == 400 and caught.value.param is None


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (b'"max_completion_tokens": 5', 5),
        (b'"max_tokens": 9, "max_completion_tokens": 5', 5),  # the new name wins, as OpenAI and vLLM have it
        (b'"max_tokens": 9, "max_completion_tokens": null', 9),
        (b'"max_tokens": 9', 9),
    ],
)
def test_the_chat_output_limit_under_both_names(limits: bytes, expected: int) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], ' + limits + b"}"
    assert PARSER.parse("chat", body).max_tokens == expected


def test_completions_have_only_max_tokens() -> None:
    body = b'{"model": "m", "prompt": "x", "max_tokens": 9, "max_completion_tokens": 5}'
    assert PARSER.parse("completion", body).max_tokens == 9


def test_a_stop_list_holds_at_most_four_strings() -> None:
    four = b'{"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d"]}'
    assert PARSER.parse("completion", four).stop == ("a", "b", "c", "d")
    with pytest.raises(APIError) as caught:
        PARSER.parse("completion", b'{"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}')
    assert caught.value.status == 400 and caught.value.param == "stop"
