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


@dataclass(frozen=True)
class Span:
    """A part of a match (``Scanner.take`` needs only ``span()``): "orders over $100" consumes "over $100"
    and leaves "orders" to the rules that read what is moved."""

    start: int
    end: int

    def span(self) -> tuple[int, int]:
        return self.start, self.end


@dataclass
class Scanner:
    text: str
    masked: str = ""
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.masked = self.text

    def finditer(self, pattern: str) -> Iterator[re.Match]:
        """Matches in the not yet consumed text (case-insensitive, Unicode), never cutting a name apart.

        "analytics.daily" and "weekly.csv" are names: a match may not start or end inside one, so
        "daily" there is not a schedule.
        """
        regex, pos = re.compile(pattern, re.IGNORECASE), 0
        while pos <= len(self.masked):
            m = regex.search(self.masked, pos)
            if m is None:
                return
            if self._inside_name(m.start(), -1) or self._inside_name(m.end(), 1):
                pos = m.start() + 1  # retry just after: a valid match may start inside this one
                continue
            yield m
            pos = max(m.end(), m.start() + 1)

    def _inside_name(self, pos: int, direction: int) -> bool:
        t = self.masked
        if direction < 0:
            return pos >= 2 and t[pos - 1] in "./" and (t[pos - 2].isalnum() or t[pos - 2] == "_")
        return pos + 1 < len(t) and t[pos] in "./" and (t[pos + 1].isalnum() or t[pos + 1] == "_")

    def take(self, m: re.Match, meaning: Optional[str] = None) -> None:
        """Consume a match; record what it meant when ``meaning`` is given."""
        start, end = m.span()
        self.masked = self.masked[:start] + MASK * (end - start) + self.masked[end:]
        if meaning is not None:
            self.hits.append(Hit(start, end, self.text[start:end], meaning))

    def has(self, keywords: str) -> bool:
        """Whether the unconsumed text contains one of ``keywords`` (a small regex): a rule whose patterns
        all need one of them skips compiling them (compiling a rule's patterns costs more than reading)."""
        return re.search(keywords, self.masked, re.IGNORECASE) is not None

    def leftover_words(self) -> list[tuple[int, str]]:
        return [(m.start(), m.group(0)) for m in re.finditer(r"\w+(?:[-'’]\w+)*", self.masked)]

    def understood(self) -> list[str]:
        return [f'"{h.text}" -> {h.meaning}' for h in sorted(self.hits, key=lambda h: (h.start, h.end))]
