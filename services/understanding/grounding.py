"""Grounding a draft in the tenant's catalog: the request's words become real tables and columns.

Four steps, each using ``linking`` to compare words with catalog names (see its docstring for the classes):

* **Tables without an engine** ("load shop.orders into analytics.x") - done in ``endpoints.resolve``: the
  connection that holds the table gives the kind.
* **The source from a noun** (``ground_source``): a source side without a table is looked for among the
  words left on that side ("load the payments into ClickHouse", «загрузи платежи в кликхаус»).
* **Prose columns** (``rewrite_columns``): once the source table is known, phrases naming its columns
  ("order amount", "created date", "customer's city") are replaced by the column names *before* the
  grammar reads the text again, so every rule that takes a column (filters, aggregates, cursors, keys,
  joins, select, rename) sees the real name. ``understood`` shows the user's words.
* **The spec's columns** (``check_columns``): every column the spec names must be a column of the source
  (or a joined table); one that is not is linked when a class decides, and asked about otherwise, naming
  the candidates.

Words that name the source table or its columns are not unknown words (``explain_leftovers``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from services.domain.spec import DATABASE_KINDS

from .draft import Draft
from .predicates import explained_before
from .lexicon import (DEFAULT_TIME_COLUMN, ENGINES, ENGINE_NAMES, PERIODS, SOURCE_PREPOSITIONS, STATUS_WORDS, STOPWORDS_EN,
                      STOPWORDS_RU, TARGET_PREPOSITIONS, VERBS, WEEKDAYS)
from .linking import (EXTENSION, CatalogIndex, Lookup, Table, is_temporal, link_column, link_table, link_value, names_column, names_value, prose,
                      similarity, time_column_named, tokens, words, LINK_SIMILARITY, ASK_SIMILARITY, LEVELS)
from .scanner import MASK, Hit, Scanner

# Words that never start or end a phrase naming a table or column.
FUNCTION_WORDS = frozenset("""
a an the of and or from into to onto in on at by per for with where every each all any some only then also
please as is are be that this these those it its their them via than but not no new my our your
и а в во из по на с со для где или только все всё всех весь каждый каждую каждые их его её это
""".split())
# Grammar words: a rule reads them; a column phrase made of them would steal the rule's words.
_GRAMMAR = frozenset("""
sum summing summed total totals average avg mean averaging count counts counting number min max minimum
maximum revenue sales turnover greater more less higher lower larger smaller above over under below least
most equal equals exceeding daily weekly monthly hourly day days week weeks month months hour hours year
incremental incrementally changed modified cursor upsert upserting merge merging replace replacing append
appending sync mirror keep latest top first last rows row records record data table tables column columns
file files folder topic database db schema join joined joining with without missing empty null blank
""".split())
_MEASURE_LEADS = frozenset("sum summing summed total average avg mean averaging count counting min max minimum "
                           "maximum".split())
_GRAMMAR_RU_STEMS = ("сумм", "итог", "средн", "количеств", "числ", "выручк", "продаж", "ежедн", "еженед",
                     "ежемес", "ежечас", "кажд", "оплаченн", "минимал", "максимал", "последн", "перв", "топ")
# What follows a participle naming a time column ("shipped in March", «оформленные с 1 мая»).
_TIME_LEAD = re.compile(r"\s+(?:in|on|before|after|since|between|from|until|till|during|within|over|last|this|"
                        r"prior|earlier|later|at|в|во|с|со|до|после|между|за|по)\b", re.I)
_NAME = re.compile(r"[`'\"][^`'\"]*[`'\"]|https?://\S+|[\w\-]+(?:[./][\w\-]+)+")
_WORD = re.compile(r"[^\W\d_][\w]*(?:['’]s)?")


def _grammar_word(w: str) -> bool:
    low = w.lower()
    return (low in _GRAMMAR or low in VERBS or low in PERIODS or low in STATUS_WORDS or low in ENGINES
            or low in WEEKDAYS or low in STOPWORDS_EN or low.startswith(_GRAMMAR_RU_STEMS))


def _content(w: str) -> bool:
    return w.lower() not in FUNCTION_WORDS


# ---------------------------------------------------------------- phrases of a text

def phrases(items: list[tuple[int, int, str]], text: str, longest: int = 3) -> list[tuple[int, int, str]]:
    """(start, end, phrase) n-grams of adjacent words (only spaces between), longest first."""
    out = []
    for i in range(len(items)):
        for n in range(longest, 0, -1):
            run = items[i:i + n]
            if len(run) < n or any(text[a[1]:b[0]].strip() for a, b in zip(run, run[1:])):
                continue
            if not (_content(run[0][2]) and _content(run[-1][2])):
                continue
            out.append((run[0][0], run[-1][1], text[run[0][0]:run[-1][1]]))
    return sorted(out, key=lambda p: (-(len(p[2].split())), p[0]))


def _text_words(text: str) -> list[tuple[int, int, str]]:
    masked = _NAME.sub(lambda m: "\x1f" * len(m.group(0)), text)
    return [(m.start(), m.end(), m.group(0)) for m in _WORD.finditer(masked)]


# ---------------------------------------------------------------- rewriting prose columns

@dataclass
class Rewrite:
    original: str
    text: str
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)  # new start/end, original start/end

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        return self._map(start, False), self._map(end, True)

    def _map(self, p: int, is_end: bool) -> int:
        shift = 0
        for ns, ne, os_, oe in self.spans:
            if (ns < p <= ne) if is_end else (ns <= p < ne):
                return oe if is_end else os_
            if (p > ne) if is_end else (p >= ne):
                shift += (oe - os_) - (ne - ns)
        return p + shift


def rewrite_columns(text: str, tables: list[Table]) -> tuple[Rewrite, list[tuple[int, str]]]:
    """``text`` with prose column phrases of ``tables`` replaced by the column names, and the link notes."""
    taken: list[tuple[int, int, str, str]] = []
    for start, end, phrase in phrases(_text_words(text), text):
        # A grammar word may be part of a column phrase ("created date") but is never one alone.
        if all(_grammar_word(w) for w in phrase.split()) or any(s < end and start < e for s, e, _, _ in taken):
            continue
        look = link_column(phrase, tables, similar=False)
        column = look.linked
        if column is None or column == phrase:
            continue
        # "sum amount" is the aggregate rule's phrase, not a prose name of amount: a measure word that adds
        # nothing to the link stays for the rule (while "total amount" still names a column total_amount).
        lead, _, rest = phrase.partition(" ")
        if lead.lower() in _MEASURE_LEADS and rest and link_column(rest, tables, similar=False).linked == column:
            continue
        # "delivered shipments" names a status value; "delivered before May" the time column delivered_on.
        if look.how == EXTENSION and any(link_value(phrase, t) for t in tables) and \
                not _TIME_LEAD.match(text[end:]):
            continue
        taken.append((start, end, column, look.how or ""))
    taken.sort()
    out, spans, notes, pos, shift = [], [], [], 0, 0
    for start, end, column, how in taken:
        out.append(text[pos:start])
        new_start = start + shift
        out.append(column)
        spans.append((new_start, new_start + len(column), start, end))
        notes.append((new_start, f'"{text[start:end]}" -> column {column} ({how})'))
        shift += len(column) - (end - start)
        pos = end
    out.append(text[pos:])
    return Rewrite(text, "".join(out), spans), notes


# ---------------------------------------------------------------- the source from a noun

def side_of(pos: int, mentions: list) -> str:
    side = "source"
    for m in mentions:
        if m.kind == "prep" and m.pos < pos:
            side = "target" if m.value in TARGET_PREPOSITIONS else "source"
    return side


def _has_locator(ep: dict) -> bool:
    return any(ep.get(k) for k in ("table", "path", "path_param", "topic", "url"))


def ground_source(sc: Scanner, d: Draft, index: CatalogIndex, mentions: list) -> None:
    """A source without a table: the words on its side may name one of the catalog's tables.

    Candidates are the grammar's "what is moved" phrase and the words left over on the source side,
    combined, so «строки заказов» is one phrase even though "строки" alone is filler.
    """
    src = d.source
    if _has_locator(src) or src.get("kind") in ("kafka", "http") or any(p.missing.startswith("source")
                                                                      for p in d.problems):
        return
    pool = [t for t in index.tables if src.get("kind") in (None, t.kind)
            and (not src.get("connection") or t.connection == src["connection"])
            and t.name != d.target.get("table")]
    subject = [(h.start, h.end, h.text) for h in sc.hits if h.meaning.startswith("what is moved")]
    # A rule may have read the noun as part of its own phrase and kept it as the subject ("join приёмы
    # with patients", "count of visits per doctor"): it still names what is moved.
    subject += [(m.start(), m.end(), m.group(0)) for phrase in d.subject
                for m in re.finditer(rf"(?<!\w){re.escape(phrase)}(?!\w)", sc.text, re.I)]
    items = sorted({(pos, pos + len(w), w) for pos, w in sc.leftover_words()
                    if side_of(pos, mentions) == "source" and w.lower() not in FUNCTION_WORDS} | set(subject))
    found = phrases(items, sc.text)
    if not pool or not found:
        return
    for start, end, phrase in found:
        look = link_table(phrase, pool, similar=False)
        if look.names:
            return _use_source(sc, d, pool, look, start, end)
    looks = [link_table(p, pool) for _, _, p in found[:6]]
    best = [(lk, f) for lk, f in zip(looks, found) if lk.linked]
    if len({lk.linked for lk, _ in best}) == 1:
        return _use_source(sc, d, pool, best[0][0], best[0][1][0], best[0][1][1])
    candidates = list(dict.fromkeys(c for lk in looks for c in lk.choices))
    if candidates:
        _ask_table(d, found[0][2], [t for t in pool if t.name in candidates])


def _use_source(sc: Scanner, d: Draft, pool: list[Table], look: Lookup, start: int, end: int) -> None:
    tables = _preferred([t for t in pool if t.name in look.names])
    if len(tables) != 1:
        _ask_table(d, look.phrase, tables)
        return
    table = tables[0]
    _set_endpoint(d.source, table)
    # The phrase may be partly consumed already (the grammar's "what is moved"): mask it all, one hit.
    sc.masked = sc.masked[:start] + MASK * (end - start) + sc.masked[end:]
    sc.hits.append(Hit(start, end, sc.text[start:end],
                       f"source table {table.name} ({look.how}, connection {table.connection})"))


def _set_endpoint(ep: dict, table: Table) -> None:
    if table.kind == "file":
        fmt = table.name.rsplit(".", 1)[-1].lower()
        ep.update({"kind": "file", "path": table.name, "format": {"ndjson": "jsonl"}.get(fmt, fmt)})
    else:
        ep.update({"kind": table.kind, "table": table.name})
    ep["connection"] = table.connection


# ---------------------------------------------------------------- category values as filters

_NEGATIONS = frozenset({"not", "non", "no", "не", "кроме", "except", "excluding"})
_CONJUNCTIONS = frozenset({"or", "and", "или", "и", ","})


def link_values(sc: Scanner, d: Draft, index: CatalogIndex) -> None:
    """Words naming a value of a category column of the source become filters ("completed appointments"
    -> status = 'completed', "from Moscow or Berlin" -> city in [...]); a word that is a value of two
    columns is asked about. Candidates are the words no rule read and the adjectives of "what is moved"."""
    table = index.table_for(d.source)
    if table is None or not table.values:
        return
    _counted_values(sc, d, table)
    entity = table.entity(3)
    words_ = [(pos, pos + len(w), w, False) for pos, w in sc.leftover_words()]
    words_ += [(h.start, h.end, h.text, True) for h in sc.hits if h.meaning.startswith("what is moved")
               and " " not in h.text]
    # A ranking phrase may have read past a value ("top 5 doctors by number of completed visits"): the
    # value still says which rows are ranked.
    words_ += [(h.start + m.start(), h.start + m.end(), m.group(0), False) for h in sc.hits
               if h.meaning.startswith("top ") for m in re.finditer(r"[^\W\d_]+(?:-[^\W\d_]+)*", h.text)]
    # A participle the verb scan took as a load verb ("delivered", "shipped") may be a value too.
    hit_at = {(h.start, h.end) for h in sc.hits}
    words_ += [(m.start(), m.end(), m.group(0), False) for m in re.finditer(r"\w+", sc.text)
               if m.group(0).lower() in VERBS and sc.masked[m.start()] == MASK and (m.start(), m.end()) not in hit_at
               and not any(h.start <= m.start() < h.end for h in sc.hits)]
    words_.sort()
    # Two adjacent words may be one value ("bank transfer" = bank-transfer); tried before each alone.
    pairs = [(a[0], b[1], f"{a[2]}_{b[2]}", a[3] and b[3]) for a, b in zip(words_, words_[1:])
             if not sc.text[a[1]:b[0]].strip() and not (a[3] or b[3])]
    picked: dict[str, list[tuple[int, int, str, bool]]] = {}
    used: list[tuple[int, int]] = []
    for start, end, w, moved in pairs + words_:
        if any(s < end and start < e for s, e in used):
            continue
        low = w.lower()
        if low in FUNCTION_WORDS or low in STOPWORDS_EN or (tokens(w, 3) and tokens(w, 3) <= entity):
            continue
        if _TIME_LEAD.match(sc.text[end:]) and time_column_named(w, table):
            continue  # "delivered before May": the time column delivered_on, not status 'delivered'
        found = link_value(w, table)
        if len({c for c, _ in found}) > 1:
            shown = " or ".join(f"{table.name}.{c} = '{v}'" for c, v in found)
            d.ask(f"value:{low}", f'"{w}" may be {shown}; which one is meant?', f"«{w}» - это {shown}; что имеется в виду?")
            continue
        if found:
            picked.setdefault(found[0][0], []).append((start, end, found[0][1], moved))
            used.append((start, end))
    # "booked via web" (booked_via = 'web'): a word naming the column of the value right after it leads to
    # that value; it is not a value of its own (status 'booked') - that filter would drop rows asked for.
    for column in list(picked):
        picked[column] = [h for h in picked[column] if not any(
            c2 != column and 0 <= s2 - h[1] <= 12 and names_column(sc.text[h[0]:h[1]], c2)
            for c2, hits2 in picked.items() for s2, _, _, _ in hits2)]
        if not picked[column]:
            del picked[column]
    for column, hits in picked.items():
        hits.sort()
        values = list(dict.fromkeys(v for _, _, v, _ in hits))
        negated = [_word_before(sc, s) for s, _, _, _ in hits]
        negated = [n for n in negated if n is not None and n[2].lower() in _NEGATIONS]
        op = ("!=" if negated else "=") if len(values) == 1 else ("not_in" if negated else "in")
        value = values[0] if len(values) == 1 else values
        f = {"column": column, "op": op, "value": value}
        if f not in d.filters and not any(x["column"] == column and x.get("value") == value for x in d.filters):
            d.filters.append(f)
        meaning = f"filter {column} {op} {value!r} (values of {table.name}.{column})"
        for start, end, _, moved in hits:
            _claim(sc, start, end, meaning, replace=moved)
            # "insured under DMS", "booked by phone": the words before the value that lead to it
            explained_before(sc, start, [f], meaning, after_related=True)
        for start, end, _ in negated:
            _claim(sc, start, end, meaning)
        for (_, e1, _, _), (s2, _, _, _) in zip(hits, hits[1:]):  # "Moscow or Berlin": the conjunction too
            between = sc.masked[e1:s2].strip().lower()
            if between in _CONJUNCTIONS:
                at = e1 + sc.masked[e1:s2].lower().index(between)
                _claim(sc, at, at + len(between), meaning)


def _counted_values(sc: Scanner, d: Draft, table: Table) -> None:
    """"weekly count of no-shows": a counted noun that is one category value of the source (status
    'no_show') says which rows are counted - the filter - and names the count; the question about it is
    dropped. A noun that is no value, or a value of two columns, keeps the question."""
    for start, end, word in d.counted:
        found = link_value(word, table)
        if len(found) != 1 or not d.aggregate:
            continue
        column, value = found[0]
        f = {"column": column, "op": "=", "value": value}
        if f not in d.filters:
            d.filters.append(f)
        d.problems = [p for p in d.problems if p.missing != "aggregate"]
        alias = re.sub(r"\W+", "_", word.lower()).strip("_")
        for m in d.aggregate["measures"]:
            if m["fn"] == "count" and m.get("alias") == "row_count" and re.fullmatch(r"[a-z_][a-z0-9_]*", alias):
                m["alias"] = alias
        sc.hits.append(Hit(start, end, sc.text[start:end],
                           f"count rows where {column} = '{value}' (values of {table.name}.{column})"))


def _word_before(sc: Scanner, start: int) -> Optional[tuple[int, int, str]]:
    m = re.search(r"(\w+)[\s-]*$", sc.masked[:start])
    return (m.start(1), m.end(1), m.group(1)) if m else None


def _claim(sc: Scanner, start: int, end: int, meaning: str, replace: bool = False) -> None:
    if replace:  # the word was read as part of what is moved; now it says which rows
        sc.hits = [h for h in sc.hits if not (h.start == start and h.end == end)]
    sc.masked = sc.masked[:start] + MASK * (end - start) + sc.masked[end:]
    sc.hits.append(Hit(start, end, sc.text[start:end], meaning))


def _preferred(tables: list[Table]) -> list[Table]:
    """Of tables one phrase names equally well: generated scratch copies only when nothing else is, and of
    one kind of connection the default one."""
    tables = [t for t in tables if not t.scratch] or tables
    if len({t.kind for t in tables}) == 1 and len({t.connection for t in tables}) > 1:
        tables = [t for t in tables if t.default] or tables
    return tables


def _ask_table(d: Draft, phrase: str, tables: list[Table]) -> None:
    shown = ", ".join(t.shown() for t in tables[:6])
    d.ask("source.table", f'Which table is "{phrase}": {shown}?', f"Какая таблица - «{phrase}»: {shown}?")


def table_holders(index: CatalogIndex, table: str, engine: Optional[str]) -> list[Table]:
    """For ``endpoints``: the catalog tables a named table may be (its engine's, when one was named)."""
    return index.holders(table, engine if engine not in (None, "kafka") else None)


def ask_which_holder(d: Draft, role: str, table: str, holders: list[Table]) -> None:
    kinds = {t.kind for t in holders}
    shown = ", ".join(f"{t.connection} ({ENGINE_NAMES.get(t.kind, t.kind)})" for t in holders)
    slot = f"{role}.kind" if len(kinds) > 1 else f"{role}.connection"
    d.ask(slot, f"{table} is in several connections: {shown}. Which one?",
          f"{table} есть в нескольких подключениях: {shown}. Какое нужно?")


# ---------------------------------------------------------------- leftover words

def _joined_column(word: str, source: Table, pairs: list) -> Optional[str]:
    """The exact name of a column only a joined table has (not a key): it becomes one of the join's columns.

    Left out, a join with no listed columns adds all of the joined table's, which is other data than asked.
    """
    if source.column(word) is not None:
        return None
    for join, jt in pairs:
        name = jt.column(word)
        if name is None or name in (join.get("on") or []) or name in (join.get("right_on") or []):
            continue
        join.setdefault("columns", [])
        if name not in join["columns"]:
            join["columns"].append(name)
        return name
    return None


def explain_leftovers(unknown: list[tuple[int, str]], sc: Scanner, d: Draft, index: Optional[CatalogIndex],
                      grounding: "Grounding") -> tuple[list[tuple[int, str]], dict[str, tuple[str, ...]]]:
    """Drop words naming the source table, a joined table or their columns; candidates for the words that
    remain."""
    table = index.table_for(d.source) if index else None
    if table is None or not unknown:
        return unknown, {}
    joined = [t for j in d.joins for t in index.holders(str(j.get("table") or ""), table.kind)[:1]]
    vocab = {level: table.entity(level).union(*(tokens(c, level) for t in [table, *joined] for c in t.column_names),
                                             *(t.entity(level) for t in joined))
             for level, _ in LEVELS}
    pairs = [(j, t) for j in d.joins for t in index.holders(str(j.get("table") or ""), table.kind)[:1]]
    left = []
    for pos, w in unknown:
        added = _joined_column(w, table, pairs)
        if added:  # naming a joined table's own column asks for it: "orders with the city of their customer"
            grounding.note(pos, f'"{w}" -> column {added} of the joined table, added to the rows')
            continue
        if any(tokens(w, level) and tokens(w, level) <= vocab[level] for level, _ in LEVELS):
            grounding.note(pos, f'"{w}" -> names the source {table.name}'
                                f'{" or a joined table, or their columns" if joined else " or its columns"}')
            continue
        left.append((pos, w))
    if not left:
        return left, {}
    names = [table.name, *table.column_names]
    forms = {table.name: prose(table.name)}
    candidates: dict[str, tuple[str, ...]] = {}
    still = []
    for pos, w in left:
        scores = similarity(w, [forms.get(n) or " ".join(words(n)) for n in names])
        ranked = sorted(zip(names, scores or []), key=lambda x: (-x[1], x[0]))
        if ranked and ranked[0][1] >= LINK_SIMILARITY and (len(ranked) == 1 or ranked[0][1] - ranked[1][1] >= 0.05):
            grounding.note(pos, f'"{w}" -> {"table" if ranked[0][0] == table.name else "column"} {ranked[0][0]} '
                                f'(similar name)')
            continue
        near = tuple(n for n, s in ranked if s >= ASK_SIMILARITY)[:4]
        if near:
            candidates[w.lower()] = near
        still.append((pos, w))
    return still, candidates


# ---------------------------------------------------------------- the spec's columns

def check_columns(spec: dict[str, Any], d: Draft, index: CatalogIndex, grounding: "Grounding",
                  answered: dict[str, str], text: str = "") -> None:
    """Every column the spec names is a real column of its source (or joined tables), linked or asked.

    The default time column (``created_at``) the source lacks is the date/time column a word of ``text``
    names ("scheduled in March" -> scheduled_at), else the source's only one, else a question."""
    source = index.table_for(spec["source"])
    if source is None or not source.columns:
        return
    tables = [source] + [t for j in spec.get("joins") or [] for t in index.holders(j["table"], source.kind)[:1]]
    known = {c.lower() for t in tables for c in t.column_names}
    aliases = {m["alias"].lower() for m in (spec.get("aggregate") or {}).get("measures") or []}
    aliases |= {str(v).lower() for v in (spec.get("rename") or {}).values()}
    if not all(t.columns for t in tables):
        return

    def fix(col: Optional[str], outputs_ok: bool = False, dated: bool = False) -> Optional[str]:
        event = _event_time(col, d, source, text, grounding) if col not in answered else None
        if event:
            return event
        if not col or "*" in col or "?" in col or col.lower() in known or (outputs_ok and col.lower() in aliases):
            return col if not col or col.lower() not in known else next(
                c for t in tables for c in t.column_names if c.lower() == col.lower())
        if col in answered:
            grounding.note(None, f'"{col}" -> column {answered[col]} (your answer)')
            return answered[col]
        if col == DEFAULT_TIME_COLUMN:
            return _default_time(col, d, source, text, grounding)
        look = link_column(col, tables, spec_column=True)
        if look.linked:
            grounding.note(None, f'"{col}" -> column {look.linked} ({look.how})')
            return look.linked
        if dated:
            return _event_column(col, d, source, grounding)
        choices = look.choices or tuple(c for c in source.column_names)[:12]
        shown = ", ".join(choices)
        d.ask(f"column:{col}", f"{source.name} has no column {col!r}; which column is it ({shown})?",
              f"В {source.name} нет колонки {col!r}; какая это колонка ({shown})?")
        return col

    _time_column(spec, d, source, answered, grounding, text)
    for f in spec.get("filters") or []:
        f["column"] = fix(f["column"], dated=_dated(f))
        _check_values(f, d, source, grounding)
    agg = spec.get("aggregate")
    if agg:
        for m in agg["measures"]:
            m["column"] = fix(m.get("column"))
        agg["dimensions"] = [fix(c) for c in agg["dimensions"]]
    if spec.get("incremental"):
        spec["incremental"]["cursor_column"] = fix(spec["incremental"]["cursor_column"])
    if not agg:
        spec["target"]["keys"] = [fix(k) for k in spec["target"].get("keys") or []]
    for c in spec.get("cleaning") or []:
        c["column"] = fix(c["column"])
    for p in spec.get("pii") or []:
        p["column"] = fix(p["column"])
    spec["select"] = [fix(c) for c in spec.get("select") or []]
    spec["rename"] = {fix(k, True): v for k, v in (spec.get("rename") or {}).items()}
    for o in spec.get("order_by") or []:
        o["column"] = fix(o["column"], True)
    for j in spec.get("joins") or []:
        j["on"] = [fix(c) for c in j.get("on") or []]
    for q in spec.get("quality_checks") or []:
        if q.get("column"):
            q["column"] = fix(q["column"], True)


def _check_values(f: dict[str, Any], d: Draft, table: Table, grounding: "Grounding") -> None:
    """A text value compared with a category column (the catalog lists all its values) must be one of
    them: spelled as the data spells it ("canceled" -> 'cancelled', "no-show" -> 'no_show'), else asked -
    "completed visits" where status is done/booked/... would load no rows, and that is other data than asked."""
    values = dict(table.values).get(f["column"])
    if not values or f["op"] not in ("=", "!=", "in", "not_in"):
        return
    given = f["value"] if isinstance(f["value"], list) else [f["value"]]
    if not all(isinstance(v, str) for v in given):
        return
    fixed = []
    for v in given:
        same = [x for x in values if x == v] or list(dict.fromkeys(x for x in values if names_value(v, x)))
        if len(same) != 1:
            shown = ", ".join(values[:12])
            d.ask(f"value:{f['column']}", f"{table.name}.{f['column']} has no value {v!r}; which of its values is "
                                         f"meant ({shown})?",
                  f"В {table.name}.{f['column']} нет значения {v!r}; какое из значений имеется в виду ({shown})?")
            return
        if same[0] != v:
            grounding.note(None, f"'{v}' -> value '{same[0]}' of {table.name}.{f['column']} (as the data spells it)")
        fixed.append(same[0])
    f["value"] = fixed if isinstance(f["value"], list) else fixed[0]


# Columns that record when a row was written or changed, not when what it describes happened.
_BOOKKEEPING = re.compile(r"(?:^|_)(?:created|updated|modified|inserted|loaded|ingested|changed|deleted|synced|"
                          r"etl|last)(?:_|$)", re.I)


def _event_time(col: Optional[str], d: Draft, table: Table, text: str, grounding: "Grounding") -> Optional[str]:
    """The default time column (``created_at``) the source has, when the request means another time: the
    column its words name ("scheduled in March"), else the table's one event time (an appointment's
    scheduled_at, not when its row was written). None keeps ``col``."""
    if col != DEFAULT_TIME_COLUMN or not table.column(col):
        return None
    named = time_column_named(text, table)
    if named:
        if named != table.column(col):
            grounding.note(None, f'"{col}" (the default time column) -> column {named} (the request names it)')
        return named
    events = [c for c, t in table.columns if is_temporal(t) and not _BOOKKEEPING.search(c)]
    if len(events) != 1:
        return None
    d.default(f"dates are {table.name}'s event time {events[0]} ({col} only says when a row was written)")
    return events[0]


def _dated(f: dict[str, Any]) -> bool:
    """A filter that compares a date: a period back from the run, or an ISO day from a date phrase."""
    return f["op"] == "within_last" or (isinstance(f["value"], str) and bool(_ISO_DAY.match(f["value"])))


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}$")


def _event_column(col: str, d: Draft, table: Table, grounding: "Grounding") -> str:
    """A date compared on an event word that is no column ("written in May", «выписанные с 1 июня»): the
    column the word names by its stem, else the table's one event time (not a row's bookkeeping time), else
    a question that lists its date/time columns."""
    return _dating_column(col, col, d, table, grounding, events_only=True)


def _default_time(col: str, d: Draft, table: Table, text: str, grounding: "Grounding") -> str:
    return _dating_column(col, text, d, table, grounding, events_only=False)


def _dating_column(col: str, said: str, d: Draft, table: Table, grounding: "Grounding", events_only: bool) -> str:
    """The column that dates a row for ``col``: the one a word of ``said`` names, else the only candidate
    (date/time columns; with ``events_only`` not the bookkeeping ones), else a question listing them."""
    named = time_column_named(said, table)
    if named:
        grounding.note(None, f'"{col}" -> column {named} (the request names it)')
        return named
    temporal = [c for c, t in table.columns if is_temporal(t)]
    candidates = [c for c in temporal if not (events_only and _BOOKKEEPING.search(c))]
    if len(candidates) == 1:
        d.default(f"{table.name} has no {col}; its only {'event ' if events_only else ''}date/time column is "
                  f"{candidates[0]}")
        return candidates[0]
    shown = ", ".join(temporal or table.column_names[:12])
    d.ask(f"column:{col}", f"{table.name} has no {col}; which column dates a row ({shown})?",
          f"В {table.name} нет {col}; по какой колонке считать время ({shown})?")
    return col


def _time_column(spec: dict, d: Draft, table: Table, answered: dict[str, str], grounding: "Grounding",
                 text: str = "") -> None:
    """A per-period aggregate needs a time column the source has; the default one may not exist."""
    agg = spec.get("aggregate")
    event = _event_time(agg.get("time_column"), d, table, text, grounding) if agg and agg.get("period") \
        and "@time" not in answered else None
    if event:
        agg["time_column"] = event
        return
    if not agg or not agg.get("period") or table.column(agg.get("time_column") or ""):
        if agg and agg.get("time_column") and table.column(agg["time_column"]):
            agg["time_column"] = table.column(agg["time_column"])
        return
    wanted = agg.get("time_column") or ""
    if "@time" in answered:
        agg["time_column"] = answered["@time"]
        grounding.note(None, f'"per {agg["period"]}" -> time column {answered["@time"]} (your answer)')
        return
    look = link_column(wanted, [table], similar=False) if wanted else Lookup("")
    temporal = [c for c, t in table.columns if is_temporal(t)]
    named = time_column_named(text, table) if wanted == DEFAULT_TIME_COLUMN else None
    if named and not look.linked:
        look = Lookup(wanted, (named,), "the request names it")
    if look.linked:
        agg["time_column"] = look.linked
        grounding.note(None, f'"{wanted}" -> column {look.linked} ({look.how})')
    elif len(temporal) == 1:
        agg["time_column"] = temporal[0]
        d.default(f"per-{agg['period']} grouping: {table.name} has no {wanted}; its only date/time column is "
                  f"{temporal[0]}")
    else:
        shown = ", ".join(temporal or table.column_names[:12])
        d.ask("aggregate.time_column", f"{table.name} has no {wanted}; which column dates a row ({shown})?",
              f"В {table.name} нет {wanted}; по какой колонке считать время ({shown})?")


# ---------------------------------------------------------------- choices in questions

def choices_for(missing: str, d: Draft, index: Optional[CatalogIndex], asked: str = "") -> str:
    """A list of catalog tables to choose from, for a question about the source that names none yet."""
    if index is None or missing not in ("source", "source.table"):
        return ""
    kind = d.source.get("kind")
    if kind and kind not in DATABASE_KINDS and kind != "file":
        return ""
    tables = [t for t in index.tables if kind in (None, t.kind)][:8]
    if not tables or any(t.shown() in asked for t in index.tables):
        return ""
    return "Tables: " + ", ".join(t.shown() for t in tables) + "."


# ---------------------------------------------------------------- what was linked, for `understood`

@dataclass
class Grounding:
    index: Optional[CatalogIndex]
    rewrite: Optional[Rewrite] = None
    notes: list[tuple[Optional[int], str]] = field(default_factory=list)

    def note(self, pos: Optional[int], text: str) -> None:
        if (pos, text) not in self.notes:
            self.notes.append((pos, text))

    def understood(self, sc: Scanner) -> list[str]:
        """The scanner's hits in the user's own words, with the links, in text order."""
        text = self.rewrite.original if self.rewrite else sc.text
        entries = []
        for h in sc.hits:
            start, end = self.rewrite.to_original(h.start, h.end) if self.rewrite else (h.start, h.end)
            entries.append((start, end, f'"{text[start:end]}" -> {h.meaning}'))
        for pos, note in self.notes:
            if pos is not None:
                start = self.rewrite.to_original(pos, pos)[0] if self.rewrite else pos
                entries.append((start, start, note))
        tail = [note for pos, note in self.notes if pos is None]
        return [e for _, _, e in sorted(entries, key=lambda x: (x[0], x[1]))] + tail
