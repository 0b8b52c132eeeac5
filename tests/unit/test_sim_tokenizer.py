"""Property tests of the simulator's tokenizer: lossless, deterministic, and every special token one token."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from reference_server.engines.sim.catalog import FAMILY_SPECIAL_TOKENS
from reference_server.engines.sim.tokenizer import SimTokenizer

TOKENIZERS = {family: SimTokenizer(tokens) for family, tokens in FAMILY_SPECIAL_TOKENS.items()}
# Text rich in the characters special tokens are made of, so that near-misses and neighbours are common.
_TEXT = st.text(st.sampled_from(list(" \n\t<>|/_sabegin of text0123é😀")), max_size=40)


@given(st.sampled_from(sorted(TOKENIZERS)), st.text(max_size=200) | _TEXT)
def test_the_pieces_give_back_the_text_and_the_count_is_theirs(family: str, text: str) -> None:
    tok = TOKENIZERS[family]
    pieces = tok.pieces(text)
    assert "".join(pieces) == text
    assert all(pieces)
    assert tok.count(text) == len(pieces) == len(tok.encode(text))
    assert tok.encode(text) == tok.encode(text)


@st.composite
def texts_with_specials(draw: st.DrawFn) -> tuple[str, list[str], str]:
    family = draw(st.sampled_from(sorted(TOKENIZERS)))
    specials = draw(st.lists(st.sampled_from(FAMILY_SPECIAL_TOKENS[family]), max_size=6))  # type: ignore[index]
    segments = [draw(_TEXT) for _ in range(len(specials) + 1)]
    for segment in segments:
        assume(not any(s in segment for s in FAMILY_SPECIAL_TOKENS[family]))  # type: ignore[index]
    text = segments[0] + "".join(s + seg for s, seg in zip(specials, segments[1:], strict=True))
    return family, specials, text


@given(texts_with_specials())
def test_each_special_token_is_one_piece_whatever_surrounds_it(case: tuple[str, list[str], str]) -> None:
    family, specials, text = case
    tok = TOKENIZERS[family]
    pieces = tok.pieces(text)
    assert "".join(pieces) == text
    assert [p for p in pieces if p in tok.special_tokens] == specials
    # No piece holds part of a special token together with other text.
    assert not any(s in p for p in pieces for s in tok.special_tokens if p != s)
