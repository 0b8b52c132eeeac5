from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.records.sse import SSEError, SSEParser

STREAM = (
    b": keep-alive\n\n"
    b'data: {"a": 1}\n\n'
    b"event: error\n"
    b'data: {"error": "x"}\n\n'
    b"data: first line\n"
    b"data: second line\n\n"
    b"id: 7\nretry: 100\ndata:no-space\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    (b"", b'{"a": 1}'),
    (b"error", b'{"error": "x"}'),
    (b"", b"first line\nsecond line"),
    (b"", b"no-space"),
    (b"", b"[DONE]"),
]


def feed_all(parser: SSEParser, pieces: list[bytes]) -> list[tuple[bytes, bytes]]:
    events = []
    for piece in pieces:
        events += parser.feed(piece)
    return events


def test_a_whole_stream_in_one_read_gives_every_event_in_order() -> None:
    parser = SSEParser()
    assert parser.feed(STREAM) == EVENTS
    assert parser.comments == 1
    assert parser.close() is False


def test_events_split_at_every_byte_come_out_the_same() -> None:
    parser = SSEParser()
    assert feed_all(parser, [STREAM[i : i + 1] for i in range(len(STREAM))]) == EVENTS
    assert parser.close() is False


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_of_the_stream_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed_all(SSEParser(), pieces) == EVENTS


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_ends_are_line_ends(newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)
    assert SSEParser().feed(stream) == EVENTS
    # Split between the CR and the LF of a pair, or after a lone CR: still one line end each.
    parser = SSEParser()
    assert feed_all(parser, [stream[i : i + 1] for i in range(len(stream))]) == EVENTS
    assert parser.close() is False


def test_an_empty_read_between_a_cr_and_its_lf_keeps_them_one_line_end() -> None:
    # Found by the property test in CI: the empty read forgot the held CR, so the LF became a blank line
    # that dispatched the event before its last (empty) data line.
    parser = SSEParser()
    pieces = [b"data: a\r", b"", b"\ndata: \r\n\r\n"]
    assert feed_all(parser, pieces) == [(b"", b"a\n")]
    assert parser.close() is False


def test_an_event_is_dispatched_only_by_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a": 1}\n') == []
    assert parser.feed(b"\n") == [(b"", b'{"a": 1}')]


def test_keep_alive_comments_between_events_are_counted_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b":\n\n: ping\n\n:\n\ndata: x\n\n") == [(b"", b"x")]
    assert parser.comments == 3


def test_a_blank_line_without_data_dispatches_nothing_and_resets_the_event_name() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: error\n\ndata: x\n\n") == [(b"", b"x")]


def test_unknown_fields_and_lines_without_colon_are_ignored_and_counted() -> None:
    parser = SSEParser()
    assert parser.feed(b"foo: bar\nnonsense\ndata: x\n\n") == [(b"", b"x")]
    assert parser.ignored == 2


def test_a_bare_data_field_is_an_empty_data_line() -> None:
    assert SSEParser().feed(b"data\n\n") == [(b"", b"")]


def test_malformed_payloads_are_passed_through_for_the_client_to_judge() -> None:
    assert SSEParser().feed(b"data: {not json\n\n") == [(b"", b"{not json")]


def test_a_leading_byte_order_mark_is_dropped_even_when_split() -> None:
    parser = SSEParser()
    assert feed_all(parser, [b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [(b"", b"x")]


def test_a_stream_cut_inside_an_event_reports_truncation() -> None:
    parser = SSEParser()
    parser.feed(b'data: {"a": 1}\n\ndata: {"b"')
    assert parser.close() is True
    parser = SSEParser()
    parser.feed(b"data: complete line but no blank line\n")
    assert parser.close() is True


def test_a_line_longer_than_the_limit_is_an_error() -> None:
    parser = SSEParser(max_line=16)
    with pytest.raises(SSEError):
        parser.feed(b"data: " + b"x" * 32)


def test_several_events_in_one_read_after_a_partial_one() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\ndata: 2") == [(b"", b"1")]
    assert parser.feed(b"\n\ndata: 3\n\ndata: 4\n\n") == [(b"", b"2"), (b"", b"3"), (b"", b"4")]
