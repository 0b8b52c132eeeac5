"""The SSE events of a streamed answer, built from a template, are the events serialised from each chunk."""

from __future__ import annotations

import itertools

import pytest

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
