"""A deterministic, fast, lossless tokenizer: words, punctuation, whitespace runs, special tokens whole.

It is not any model's tokenizer, but it has the properties the contract needs: the same text always gives the
same tokens, concatenating the pieces gives the text back, and every special token counts as exactly one token.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"[0-9]")
_OTHER = re.compile(r"[^\sA-Za-z0-9]")


class SimTokenizer:
    def __init__(self, special_tokens: Iterable[str]) -> None:
        specials = sorted(set(special_tokens), key=len, reverse=True)
        escaped = "|".join(re.escape(s) for s in specials)
        # A word's optional leading space is never taken from in front of a special token (which would split
        # it); the guard costs a look-ahead, so only the kinds of word a special token can start like get it.

        def word(start: re.Pattern[str], body: str) -> str:
            return f" (?!{escaped}){body}|{body}" if any(start.match(s) for s in specials) else f" ?{body}"

        words = "|".join(
            (word(_LETTER, "[A-Za-z]+"), word(_DIGIT, "[0-9]{1,3}"), word(_OTHER, r"[^\sA-Za-z0-9]"), r"\s+(?!\S)|\s+")
        )
        self._pattern = re.compile(f"{escaped}|{words}" if specials else words)
        self.special_tokens = frozenset(specials)

    def pieces(self, text: str) -> list[str]:
        return self._pattern.findall(text)

    def encode(self, text: str) -> list[int]:
        return [zlib.crc32(p.encode()) & 0xFFFF for p in self._pattern.findall(text)]

    def count(self, text: str) -> int:
        return sum(1 for _ in self._pattern.finditer(text))
