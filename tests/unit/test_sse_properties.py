"""Property tests of the SSE parser: any valid stream, cut into reads anywhere, gives the events it encodes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from harness.records.sse import SSEParser

# Field values are any bytes but line ends; names and payloads may hold colons, spaces and invalid UTF-8.
_VALUE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@dataclass(frozen=True)
class Stream:
    raw: bytes
    events: list[tuple[bytes, bytes]]


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """A well-formed stream with one line ending throughout (mixing a lone CR with an LF would make a CRLF)."""
    eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    lines: list[bytes] = [b"\xef\xbb\xbf"] if draw(st.booleans()) else []
    events: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(0, 6))):
        for comment in draw(st.lists(_VALUE, max_size=2)):
            lines += [b":" + comment, b""]  # a keep-alive between events
        name = draw(st.one_of(st.just(b""), _VALUE))
        if name:
            lines.append(b"event: " + name)
        if draw(st.booleans()):
            lines.append(b"id: " + draw(_VALUE))
        data = draw(st.lists(_VALUE, min_size=1, max_size=3))
        lines += [b"data: " + d for d in data]
        lines.append(b"")  # the blank line that dispatches the event
        events.append((name, b"\n".join(data)))
    raw = b"".join(line + eol for line in lines)
    return Stream(raw, events)


def feed(pieces: list[bytes]) -> tuple[list[tuple[bytes, bytes]], bool]:
    parser = SSEParser()
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events, parser.close()


def cut(raw: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(min(p, len(raw)) for p in points), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


@given(streams(), st.lists(st.integers(min_value=0, max_value=2000), max_size=20))
def test_any_split_of_a_valid_stream_gives_its_events(stream: Stream, points: list[int]) -> None:
    assert feed([stream.raw]) == (stream.events, False)
    assert feed(cut(stream.raw, points)) == (stream.events, False)


@given(streams())
def test_one_byte_reads_give_the_same_events(stream: Stream) -> None:
    assert feed([stream.raw[i : i + 1] for i in range(len(stream.raw))]) == (stream.events, False)


@given(streams(), st.integers(min_value=0, max_value=2000), st.lists(st.integers(min_value=0, max_value=2000)))
def test_a_cut_stream_gives_a_prefix_of_its_events(stream: Stream, end: int, points: list[int]) -> None:
    prefix = stream.raw[:end]
    events, _ = feed(cut(prefix, points))
    assert events == stream.events[: len(events)]
    assert events == feed([prefix])[0]
