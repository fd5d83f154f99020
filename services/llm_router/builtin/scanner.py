"""A request under analysis: the text, which parts of it rules have consumed, and what they meant.

Rules match against ``masked``: consumed characters are replaced by ``\\x1f`` (neither a word character
nor white space), so a later rule can neither match them again nor match across them. Whatever no rule
consumed is checked at the end; unknown words make the compiler ask instead of guessing.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterator, Optional

MASK = "\x1f"
_TRANSLATE = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00ab": '"',
                            "\u00bb": '"', "\u2013": "-", "\u2014": "-", "\u2011": "-", "\u00a0": " ",
                            "\u202f": " "})


def normalize(text: str) -> str:
    """NFC, ASCII quotes and dashes, single spaces: users paste from chat apps and word processors."""
    text = unicodedata.normalize("NFC", text).translate(_TRANSLATE)
    return " ".join(text.split())


def is_russian(text: str) -> bool:
    return bool(re.search(r"[а-яё]", text, re.I))


@dataclass(frozen=True)
class Hit:
    start: int
    end: int
    text: str
    meaning: str


@dataclass
class Scanner:
    text: str
    masked: str = ""
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.masked = self.text

    def finditer(self, pattern: str) -> Iterator[re.Match]:
        """Matches in the not yet consumed text (case-insensitive, Unicode)."""
        return re.finditer(pattern, self.masked, re.IGNORECASE)

    def search(self, pattern: str) -> Optional[re.Match]:
        return re.search(pattern, self.masked, re.IGNORECASE)

    def take(self, m: re.Match, meaning: Optional[str] = None, group: int = 0) -> None:
        """Consume a match (or one of its groups); record what it meant when ``meaning`` is given."""
        start, end = m.span(group)
        self.masked = self.masked[:start] + MASK * (end - start) + self.masked[end:]
        if meaning is not None:
            self.hits.append(Hit(start, end, self.text[start:end], meaning))

    def take_span(self, start: int, end: int) -> None:
        self.masked = self.masked[:start] + MASK * (end - start) + self.masked[end:]

    def leftover_words(self) -> list[tuple[int, str]]:
        return [(m.start(), m.group(0)) for m in re.finditer(r"\w+(?:[-'’]\w+)*", self.masked)]

    def understood(self) -> list[str]:
        return [f'"{h.text}" -> {h.meaning}' for h in sorted(self.hits, key=lambda h: (h.start, h.end))]
