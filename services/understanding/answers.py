"""Answers to clarification questions: each fills the slot its question named, so the dialogue converges.

A clarification lists its slots in ``missing`` (``source.table``, ``unrecognized:<word>``, ...). An answer
is ``{"slot": ..., "text": ...}``; ``compile_request(text, answers=[...])`` reads the original request
again with every answer applied:

* ``unrecognized:<word>`` - what the word means. "ignore it" / "nothing" / «игнорируй» drops it; "the
  table X" / "column X" / any other words take its place in the request ("mirror" -> "sync"). Either way
  the word is *answered*: it can never make the same question again.
* ``source...`` / ``target...`` (``source``, ``source.table``, ``source.kind``, ``target.path``, ...) -
  the answer names that side: it is read as if the request said "from <answer>" / "into <answer>".
  ``<side>.connection`` picks the connection by name.
* ``column:<name>`` - the real column meant by ``name``; ``aggregate.time_column`` - the column that dates
  a row.
* anything else - the answer is read as more of the request (what ``/revise`` does).

Later answers to the same slot replace earlier ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .linking import CatalogIndex

_IGNORE = re.compile(r"(?:just\s+)?(?:ignore(?:\s+(?:it|this|that|the\s+word))?|skip(?:\s+it)?|nothing|none|"
                     r"no\s+meaning|it\s+means\s+nothing|doesn'?t\s+matter|not\s+important|n/?a|-|"
                     r"игнорир\w*(?:\s+(?:его|это))?|пропусти\w*|ничего|не\s*важно|неважно|не\s+имеет\s+значения)"
                     r"[.!]?", re.I)
_LEAD = re.compile(r"^(?:it\s+(?:means|is)|means|that\s+is|i\s+meant?|это|означает|имелось\s+в\s+виду)\s+",
                   re.I)
_NAMED = re.compile(r"^(?:the\s+)?(?P<what>table|column|таблиц\w*|колонк\w*|столбец|поле)\s+(?P<name>\S+)$|"
                    r"^(?:the\s+)?(?P<name2>\S+)\s+(?P<what2>table|column)$", re.I)
_MAX_ANSWER = 500


@dataclass
class Dialogue:
    """What the answers changed: words now explained, columns named, connections picked, notes shown."""

    answered: set[str] = field(default_factory=set)
    columns: dict[str, str] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def apply(self, d) -> None:
        for role, name in self.connections.items():
            side = d.source if role == "source" else d.target
            side["connection"] = name


def apply_answers(text: str, answers: Optional[list[dict[str, Any]]],
                  index: Optional[CatalogIndex] = None) -> tuple[str, Dialogue]:
    """The request as the grammar should read it once ``answers`` are applied, and what they changed."""
    dialogue = Dialogue()
    latest: dict[str, str] = {}
    for a in answers or []:
        if isinstance(a, dict) and isinstance(a.get("text"), str) and a["text"].strip():
            latest.pop(str(a.get("slot") or "question"), None)  # a later answer replaces, and moves last
            latest[str(a.get("slot") or "question")] = " ".join(a["text"].split())[:_MAX_ANSWER]
    extra = []
    for slot, answer in latest.items():
        if slot.startswith("unrecognized:"):
            text = _meaning(text, slot.split(":", 1)[1], answer, dialogue)
        elif slot.startswith("column:"):
            dialogue.columns[slot.split(":", 1)[1]] = _name_in(answer)
            dialogue.notes.append(f'"{slot.split(":", 1)[1]}" -> column {_name_in(answer)} (your answer)')
        elif slot == "aggregate.time_column":
            dialogue.columns["@time"] = _name_in(answer)
        elif slot.endswith(".connection") and index is not None and _connection(index, answer):
            dialogue.connections[slot.split(".", 1)[0]] = index.chosen[slot.split(".", 1)[0]] = \
                _connection(index, answer)
        elif slot.split(".", 1)[0] in ("source", "target"):
            extra.append(("from " if slot.startswith("source") else "into ") + answer)
        else:
            extra.append(answer)
    return " ".join([text, *extra]).strip(), dialogue


def _meaning(text: str, word: str, answer: str, dialogue: Dialogue) -> str:
    """Replace (or drop) ``word`` in ``text`` as the answer says."""
    dialogue.answered.add(word.lower())
    pattern = re.compile(rf"(?<![\w.]){re.escape(word)}(?![\w])", re.I)
    meant = _LEAD.sub("", answer.strip().strip("'\"«»").strip()).strip(" .")
    if _IGNORE.fullmatch(meant) or not meant:
        dialogue.notes.append(f'"{word}" -> ignored (your answer)')
        return " ".join(pattern.sub(" ", text).split())
    named = _NAMED.match(meant)
    if named:
        what = (named.group("what") or named.group("what2")).lower()
        name = named.group("name") or named.group("name2")
        meant = f"the table {name}" if what.startswith(("table", "таблиц")) and "." not in name else name
    if pattern.search(meant):  # "it means foo": the word is fine as it is
        dialogue.notes.append(f'"{word}" -> kept as is (your answer)')
        return text
    dialogue.notes.append(f'"{word}" -> "{meant}" (your answer)')
    dialogue.answered |= {w.lower() for w in re.findall(r"\w+", meant) if w.lower() == word.lower()}
    return pattern.sub(lambda _: meant, text)


def _name_in(answer: str) -> str:
    meant = _LEAD.sub("", answer.strip().strip("'\"«»")).strip(" .")
    named = _NAMED.match(meant)
    return (named.group("name") or named.group("name2")) if named else meant.split()[0] if meant else meant


def _connection(index: CatalogIndex, answer: str) -> Optional[str]:
    names = {t.connection.lower(): t.connection for t in index.tables}
    return names.get(_name_in(answer).lower())
