"""The SSE events of a streamed answer, built from a template, are the events serialised from each chunk; the
profiles' usage, cached tokens included, and what the openai schemas accept of it."""

from __future__ import annotations

import itertools

import jsonschema
import pytest

import schemas
from reference_server.profile import ChunkStream, sse

TEXTS = ["", "Hello", ' "quoted" \\ back', "ünïcødé 🙂", "line\nbreak\ttab\x00nul", "</script>"]


@pytest.mark.parametrize(
    ("profile", "kind", "include_usage"),
    list(itertools.product(("anyscale", "openai"), ("chat", "completion"), (False, True))),
)
def test_a_chunk_event_from_the_template_is_byte_for_byte_the_serialised_chunk(
    profile: str, kind: str, include_usage: bool
) -> None:
    chunks = ChunkStream(profile, kind, "cmpl-" + "ab" * 16, 1_700_000_000, "org/model-7b", include_usage)  # type: ignore[arg-type]
    for text in TEXTS:
        assert chunks.delta_event(text) == sse(chunks.delta_chunk(text, None, None))


def test_cached_tokens_are_reported_under_the_openai_profile_only() -> None:
    from reference_server.profile import Usage

    usage = Usage(40, 5, cached_tokens=32)
    assert usage.as_dict("openai") == {
        "prompt_tokens": 40,
        "completion_tokens": 5,
        "total_tokens": 45,
        "prompt_tokens_details": {"cached_tokens": 32},
    }
    assert usage.as_dict("anyscale") == {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}
    assert "prompt_tokens_details" not in Usage(40, 5).as_dict("openai")  # an engine without a prefix cache
    openai = ChunkStream("openai", "chat", "chatcmpl-1", 1, "m", include_usage=True)
    chunk = openai.usage_chunk(usage)
    assert chunk is not None and chunk["usage"]["prompt_tokens_details"] == {"cached_tokens": 32}
    anyscale = ChunkStream("anyscale", "chat", "m-1", 1, "m", include_usage=True)
    assert "prompt_tokens_details" not in anyscale.chunk([], usage)["usage"]


@pytest.mark.parametrize("obj", ["chat_completion", "completion", "chat_chunk", "completion_chunk"])
def test_the_openai_usage_may_say_its_cached_tokens_or_null_as_vllms_server_does(obj: str) -> None:
    schema = schemas.response_schema("openai", obj)
    usage_schema = schema["properties"]["usage"]
    validator = jsonschema.Draft7Validator(usage_schema)
    counts = {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}
    for details in ({"cached_tokens": 32}, None):
        assert not list(validator.iter_errors({**counts, "prompt_tokens_details": details}))
    assert not list(validator.iter_errors(counts))
    assert list(validator.iter_errors({**counts, "prompt_tokens_details": {"cached_tokens": -1}}))
    assert list(validator.iter_errors({**counts, "prompt_tokens_details": 32}))
