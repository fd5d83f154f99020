"""Sources and targets: engine names, tables, files, topics and URLs, and which side each belongs to.

After every other rule consumed its phrases, what remains is scanned for *mentions* (an engine, a
``schema.table``, a file, a topic, a URL) and *prepositions*. A mention belongs to the side named by the
nearest preposition before it: "from/of/из" is the source, "into/to/в" the target; mentions before any
preposition are the verb's object, i.e. the source ("Sync shop.orders from PostgreSQL into ...").

Target connectives besides the prepositions: an arrow ("shop.orders -> CH analytics.x", "→", "=>") and a
verb that places the result ("put it in", "land them in", "save as", "store under", "write to"). A pipeline
has one source and one target: when one side got two places and the other none, the side is split
(``_split_side``) - at a preposition between them ("refresh <target> from <source>", «... в a.csv -
сохрани в <target>»), else the one the catalog holds is the source and the other, new one, the target,
else the first named is the source.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .draft import Draft
from .grounding import ask_which_holder, table_holders
from .lexicon import (ENGINE_NAMES, ENGINE_WORDS, ENGINES, IDENT, NOT_A_COLUMN, SOURCE_PREPOSITIONS,
                      TARGET_PREPOSITIONS)
from .scanner import Scanner

_TOPIC = r"[A-Za-z0-9](?:[\w.\-]*\w)?"
_SUPPORTED_EXT = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "xml": "xml", "parquet": "parquet"}
_FORMAT_WORDS = {"csv": "csv", "jsonl": "jsonl", "json lines": "jsonl", "ndjson": "jsonl", "xml": "xml",
                 "parquet": "parquet"}


@dataclass(frozen=True)
class Mention:
    pos: int
    kind: str  # engine | table | file | topic | url | file_noname | prep
    value: str
    extra: str = ""
    end: int = -1  # where the mention's text ends (-1: unknown)

    @property
    def stop(self) -> int:
        return self.end if self.end >= 0 else self.pos + len(self.value)


def _engine(word: str) -> str:
    w = " ".join(word.lower().replace("-", " ").split())
    stems = (("постгр", "postgres"), ("кликх", "clickhouse"), ("кафк", "kafka"))
    return ENGINES.get(w) or next(kind for stem, kind in stems if w.startswith(stem))


def find_mentions(sc: Scanner) -> list[Mention]:
    found: list[Mention] = []
    for m in list(sc.finditer(r"\bhttps?://[^\s,;'\"`<>]+")):
        found.append(Mention(m.start(), "url", m.group(0).rstrip(".)")))
        sc.take(m, f"HTTP API {m.group(0)}")
    topic = rf"[`'\"]?(?P<topic>{_TOPIC})[`'\"]?"
    # "the topic kafka x", «топика Kafka x»: the engine word between is not the topic's name.
    engine = r"(?:(?:kafka|кафк\w*)\s+(?=[\w`'\"]))?"
    for pattern in (rf"\b(?:the\s+)?(?:kafka\s+)?topic\s+{engine}{topic}",
                    rf"\b(?:kafka[- ]?)?топик\w*\s+{engine}{topic}"):
        for m in list(sc.finditer(pattern)):
            found.append(Mention(m.start(), "topic", m.group("topic")))
            sc.take(m, f"Kafka topic {m.group('topic')}")
    found += _find_files(sc)
    found += _find_engines_and_tables(sc)
    prepositions = "|".join(sorted(SOURCE_PREPOSITIONS | TARGET_PREPOSITIONS, key=len, reverse=True))
    for m in list(sc.finditer(_TARGET_CONNECTIVE)):
        found.append(Mention(m.start(), "prep", "into", end=m.end()))
        sc.take(m, "the target follows")
    for m in list(sc.finditer(rf"\b(?:{prepositions})\b")):
        found.append(Mention(m.start(), "prep", m.group(0).lower(), end=m.end()))
        sc.take(m)
    return sorted(found, key=lambda x: x.pos)


# An arrow, or a verb that places the result followed by where ("put it in", "land them in", "save as",
# "store under", "write to"): the target follows, like after "into". Russian «сохрани/положи в» already
# end in the target preposition «в».
_TARGET_CONNECTIVE = (r"(?:-+>|→|⟶|=>)|\b(?:put|puts|putting|land|lands|landing|store|stores|storing|save|saves|"
                      r"saving|write|writes|writing|place|places|placing|dump|dumps|dumping)\s+(?:(?:it|them|this|that|everything|the\s+(?:result|results|output|rows|"
                      r"data|table))\s+)?(?:in|into|to|as|under|onto)\b")


def _find_files(sc: Scanner) -> list[Mention]:
    found = []
    fmt = r"(?P<fw>csv|jsonl|json\s+lines|ndjson|xml|parquet)"
    prefix = rf"(?:\b(?:the\s+|a\s+|an\s+)?(?:{fmt}\s+)?(?:file|файл\w*)\s+(?:named\s+|called\s+)?)?"
    path = (r"[`'\"]?(?<![\w\-/.])(?P<path>(?:[\w\-]+/)*[\w\-]+(?:\.[\w\-]+)*\.(?P<ext>csv|jsonl|ndjson|xml|parquet|json|tsv|"
            r"txt|xlsx?|gz|zip))[`'\"]?(?!\w|\.\w)")
    for m in list(sc.finditer(prefix + path)):
        found.append(Mention(m.start(), "file", m.group("path"), m.group("ext").lower()))
        sc.take(m, f"file {m.group('path')}")
    for m in list(sc.finditer(rf"\b(?:the\s+|a\s+|an\s+)?{fmt}\s+(?:file|файл\w*)\b")):
        found.append(Mention(m.start(), "file_noname", _FORMAT_WORDS[" ".join(m.group("fw").lower().split())]))
        sc.take(m, f"{m.group('fw')} file")
    return found


def _find_engines_and_tables(sc: Scanner) -> list[Mention]:
    found = []
    engines = ENGINE_WORDS
    for m in list(sc.finditer(rf"\b(?P<e>{engines})\b(?:\s+(?:table|database|db|таблиц\w*))?")):
        kind = _engine(m.group("e"))
        found.append(Mention(m.start(), "engine", kind, end=m.end()))
        sc.take(m, ENGINE_NAMES[kind])
    quoted = rf"[`'\"]?(?P<t>{IDENT}(?:\.{IDENT})?)[`'\"]?"
    for pattern in (rf"\b(?:the\s+)?(?:table|таблиц\w*)\s+{NOT_A_COLUMN}{quoted}(?![\w@/]|\.\w)",
                    rf"(?<![\w.@/])[`'\"]?(?P<t>{IDENT}\.{IDENT})[`'\"]?(?![\w@/]|\.\w)"):
        for m in list(sc.finditer(pattern)):
            found.append(Mention(m.start(), "table", m.group("t")))
            sc.take(m, f"table {m.group('t')}")
    return found


_LOCATORS = ("table", "file", "topic", "url")


def assign_sides(mentions: list[Mention], index=None) -> tuple[list[Mention], list[Mention]]:
    source, target, side = [], [], "source"
    for mention in mentions:
        if mention.kind == "prep":
            side = "target" if mention.value in TARGET_PREPOSITIONS else "source"
        (source if side == "source" else target).append(mention)
    for one, other in ((source, target), (target, source)):
        if _places(one) == 2 and not _places(other):
            first, second = _split_side(one, index)
            source[:], target[:] = first, second
            break
    return [m for m in source if m.kind != "prep"], [m for m in target if m.kind != "prep"]


def _places(mentions: list[Mention]) -> int:
    return len({m.value for m in mentions if m.kind in _LOCATORS})


def _split_side(mentions: list[Mention], index=None) -> tuple[list[Mention], list[Mention]]:
    """Two places on one side and none on the other: (source part, target part); see the module docstring.

    Without a preposition between them only the catalog can tell: one it holds (the source) and one it does
    not (a new target). Two existing tables stay two sources (a question): writing into a table the
    request may mean as a source is never guessed."""
    at = [i for i, m in enumerate(mentions) if m.kind in _LOCATORS]
    first, second = at[0], next(i for i in at if mentions[i].value != mentions[at[0]].value)
    preps = [i for i in range(first + 1, second) if mentions[i].kind == "prep"]
    if preps:
        cut = preps[-1]
        before, after = mentions[:cut], mentions[cut:]
        return (after, before) if mentions[cut].value in SOURCE_PREPOSITIONS else (before, after)
    # No preposition between: an engine word right before the second place qualifies it ("CH x").
    cut = second
    while cut - 1 > first and mentions[cut - 1].kind == "engine" and mentions[cut - 1].stop + 16 >= mentions[cut].pos:
        cut -= 1
    before, after = mentions[:cut], mentions[cut:]
    known = [bool(index.holders(mentions[i].value)) for i in (first, second)] if index is not None else []
    if known == [True, False]:
        return before, after
    if known == [False, True]:
        return after, before
    return mentions, []


def resolve(d: Draft, mentions: list[Mention], connections: dict[str, str], index=None,
            links: Optional[list] = None) -> None:
    """Fill both sides from their mentions; ``index`` (a linking.CatalogIndex) knows which connection
    holds a table named without an engine. What the catalog decided is appended to ``links`` as
    (position, understood line)."""
    # Grammar rules may add mentions of their own ("keep <target> in sync with <source>", "to a csv").
    src, dst = assign_sides(sorted(mentions + d.mentions, key=lambda x: x.pos), index)
    _resolve_side(d, "source", src, d.source, index, links)
    _resolve_side(d, "target", dst, d.target, index, links)
    default_target_table(d)
    for side in (d.source, d.target):
        if side.get("kind") and side.get("kind") in connections and not side.get("connection"):
            side["connection"] = connections[side["kind"]]


def _resolve_side(d: Draft, role: str, mentions: list[Mention], out: dict, index=None,
                  links: Optional[list] = None) -> None:
    engines = sorted({m.value for m in mentions if m.kind == "engine"})
    # "Load orders from shop.orders": the same name twice is one mention.
    by_kind = {k: list({m.value: m for m in mentions if m.kind == k}.values())
               for k in ("table", "file", "topic", "url", "file_noname")}
    locators = [k for k in ("table", "file", "topic", "url") if by_kind[k]]
    if len(engines) > 1 or len(locators) > 1 or any(len(by_kind[k]) > 1 for k in locators):
        names = ", ".join(m.value for m in mentions)
        d.ask(role, f"Several {role}s were named ({names}); a pipeline has one {role}. Which one?",
              f"Названо несколько {'источников' if role == 'source' else 'приёмников'} ({names}); какой нужен?")
        return
    engine = engines[0] if engines else None
    if out.get("path_param"):  # the webhook rule already fixed the source to a run-parameter file
        if mentions:
            d.ask(role, "The file comes from the webhook payload; what are the other source names for?",
                  "Файл берётся из запроса вебхука; зачем указан ещё один источник?")
        return
    _fill_endpoint(d, role, engine, by_kind, out, index, links if links is not None else [])


def _fill_endpoint(d: Draft, role: str, engine: Optional[str], by_kind: dict, out: dict, index=None,
                   links: Optional[list] = None) -> None:
    if by_kind["file"]:
        _fill_file(d, role, engine, by_kind["file"][0], out)
    elif by_kind["topic"]:
        if engine not in (None, "kafka"):
            _ask_conflict(d, role)
            return
        out.update({"kind": "kafka", "topic": by_kind["topic"][0].value, "message_format": "json"})
    elif by_kind["url"]:
        out.update({"kind": "http", "url": by_kind["url"][0].value})
    elif by_kind["table"]:
        table = by_kind["table"][0].value
        holders = _holders(index, table, engine, role)
        if len(holders) > 1:
            ask_which_holder(d, role, table, holders)
            return
        if engine in (None, "kafka") and holders:
            out.update({"kind": holders[0].kind, "table": holders[0].name, "connection": holders[0].connection})
            links.append((by_kind["table"][0].pos, f'"{table}" -> {ENGINE_NAMES[holders[0].kind]} connection '
                                                   f'{holders[0].connection} (the catalog: it holds {holders[0].name})'))
            return
        home = _new_table_home(index, table, role) if engine is None and not holders else None
        if home is not None:
            out.update({"kind": home.kind, "table": table, "connection": home.connection})
            links.append((by_kind["table"][0].pos, f'"{table}" -> a new {ENGINE_NAMES[home.kind]} table in connection '
                                                   f'{home.connection} (the catalog: it has {table.split(".")[0]})'))
            return
        if engine in (None, "kafka"):
            d.ask(f"{role}.kind", f"Which database holds {table} (PostgreSQL, ClickHouse or SQLite)?",
                  f"В какой базе лежит {table} (PostgreSQL, ClickHouse или SQLite)?")
            return
        out.update({"kind": engine, "table": holders[0].name if holders else table})
        if holders:
            out["connection"] = holders[0].connection
    elif engine:
        out["kind"] = engine  # the table/topic is still missing; resolved or asked about later
    elif by_kind["file_noname"]:
        out.update({"kind": "file", "format": by_kind["file_noname"][0].value})


def _fill_file(d: Draft, role: str, engine: Optional[str], mention: Mention, out: dict) -> None:
    if engine is not None:
        _ask_conflict(d, role)
        return
    fmt = _SUPPORTED_EXT.get(mention.extra)
    if fmt is None:
        d.ask(f"{role}.format", f"{mention.value}: which format is it? Supported files are .csv, .jsonl "
                                f"(one JSON object per line), .xml and .parquet.",
              f"{mention.value}: в каком он формате? Поддерживаются .csv, .jsonl, .xml и .parquet.")
        return
    path = mention.value
    if role == "source" and d.source.get("folder") and "/" not in path:
        path = f"{d.source.pop('folder')}/{path}"
    out.update({"kind": "file", "path": path, "format": fmt})


def _holders(index, table: str, engine: Optional[str], role: str) -> list:
    """The catalog's tables ``table`` may be (within the named engine, in the connection an answer chose);
    none without a catalog."""
    if index is None:
        return []
    found = table_holders(index, table, engine)
    if "." not in table:  # a bare name: generated scratch copies only when nothing else has it
        found = [t for t in found if not t.scratch] or found
    if index.chosen.get(role):
        found = [t for t in found if t.connection == index.chosen[role]] or found
    # A table of the same name in two connections of one kind: the default connection is meant.
    if len({t.kind for t in found}) == 1 and len(found) > 1 and any(t.default for t in found):
        found = [t for t in found if t.default]
    return found


def _new_table_home(index, table: str, role: str):
    """A target table the catalog does not hold yet goes to the connection holding its schema, when one
    connection (the default one, of several of that kind) does."""
    if index is None or role != "target":
        return None
    found = index.schema_home(table)
    connections = {t.connection for t in found}
    if len(connections) > 1:
        found = [t for t in found if t.default]
        connections = {t.connection for t in found}
    return found[0] if len(connections) == 1 else None


def _ask_conflict(d: Draft, role: str) -> None:
    d.ask(role, f"The {role} names two different kinds of place (a database and a file or topic); which is it?",
          "Указаны два разных вида хранилища (база и файл или топик); какой нужен?")


def default_target_table(d: Draft) -> None:
    """A target engine without a table takes the source's name (documented default, noted in the plan)."""
    t, s = d.target, d.source
    if t.get("kind") not in ("postgres", "clickhouse", "sqlite") or t.get("table"):
        return
    name = s.get("table") or s.get("topic") or _stem(s.get("path"))
    if name and re.fullmatch(rf"{IDENT}(?:\.{IDENT})?", name):
        t["table"] = name
        d.default(f"target table not named: using the source's name {name}")


def _stem(path: Optional[str]) -> Optional[str]:
    if not path:
        return None
    return re.sub(r"\W", "_", path.rsplit("/", 1)[-1].split(".", 1)[0])
