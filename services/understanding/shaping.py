"""The shape of the output: joins on keys, top-N, column selection and renames (spec.joins, order_by,
limit, select, rename). See docs/builtin-provider.md, "Joins" and "Shaping the output".
"""
from __future__ import annotations

import re
from typing import Any, Optional

from .draft import Draft
from .lexicon import (DEFAULT_TIME_COLUMN, ENGINE_WORDS, ENTITY_NOUNS, GRAIN_RU, IDENT, JOIN_ENTITIES_RU, MONEY_NOUNS, NOT_A_COLUMN,
                      STOPWORDS_EN, STOPWORDS_RU, column)
from .numbers import NUMBER_ANY, number_value
from .operations import column_name, parse_measure, singular
from .scanner import Scanner, Span

_REF = rf"{IDENT}(?:\.{IDENT})?"
# A verb after the key list starts the next instruction ("on customer_id, adding the city", "by doctor_id and
# sum the fee"): it is not a second key.
_NOT_A_KEY = r"(?!(?:add|adding|plus|sum|summing|count|counting|load|loading|put|write|добав\w*|загруз\w*|сумм\w*|посчита\w*)\b)"
_KEYS = (rf"(?P<keys>{IDENT}(?:\.{IDENT})?(?:\s*=\s*{IDENT}(?:\.{IDENT})?)?"
         rf"(?:\s*(?:,|and|и)\s*{NOT_A_COLUMN}{_NOT_A_KEY}(?!(?:из|в|во|с|по)\b){IDENT}(?!\.\w))*)")
_KEY_WORD = r"(?:on|by|using|via|over|through|matching\s+on|по)"
_COLS = rf"(?P<cols>{column('c1')}(?:\s*(?:,|and|и)\s*(?:the\s+)?{NOT_A_COLUMN}{IDENT})*)"


# --- joins -----------------------------------------------------------------------------------------

def scan_joins(sc: Scanner, d: Draft) -> None:
    if not sc.has(r"join|merged|combined|matched|enrich|augment|extend|their|its\b|'s\b|соедин|объедин|джойн|"
                  r"присоедин|обогат|клиент|покупател|товар|продукт|пользовател|заказ|магазин|пациент|врач"):
        return
    table = (rf"(?:the\s+)?(?:table\s+)?[`'\"]?(?P<table>{_REF})[`'\"]?(?:\s+(?:table|data|info|details|"
             rf"records|rows))?")
    explicit = (
        # "join A with/to B on K": A is the source, left to the endpoint rules
        rf"\b(?:(?P<kind>left|inner)\s+)?(?:join(?:ing|s)?|merge|combine)\s+(?:the\s+)?(?P<src>{_REF})\s+"
        rf"(?:with|to|and|against)\s+{table}\s+{_KEY_WORD}\s+(?:the\s+)?(?:key\s+|keys\s+|columns?\s+)?{_KEYS}",
        rf"\b(?:(?P<kind>left|inner)\s+)?(?:join(?:ed|ing|s)?|merged|combined|matched)\s+(?:it\s+|them\s+)?"
        rf"(?:with|to|against|on)?\s*{table}\s+{_KEY_WORD}\s+(?:the\s+)?(?:key\s+|keys\s+|columns?\s+)?{_KEYS}",
        rf"\b(?P<enrich>enrich(?:ed|ing|es)?|augment(?:ed|ing|s)?|extend(?:ed|ing|s)?)\s+(?:(?:them|it|each\s+"
        rf"\w+|(?P<what>\w+))\s+)?with\s+(?:data\s+from\s+|info\s+from\s+|details\s+from\s+)?{table}\s+"
        rf"{_KEY_WORD}\s+(?:the\s+)?{_KEYS}",
        rf"\b(?:(?P<kind>left|inner)\s+)?(?:соедин\w*|объедин\w*|джойн\w*|присоедин\w*|(?P<enrich>обогат\w*))\s+"
        rf"(?:(?P<src>{IDENT}\.{IDENT})\s+|(?P<what>\w+)\s+)?(?:с|со)\s+(?:таблиц\w+\s+)?(?:данными\s+)?[`'\"]?(?P<table>{_REF}|"
        rf"{'|'.join(JOIN_ENTITIES_RU)})[`'\"]?\s+по\s+"
        rf"(?:ключу\s+|полю\s+|колонке\s+)?{_KEYS}",
        rf"\b(?P<enrich>обогат\w*)\s+(?:(?P<what>\w+)\s+)?данными\s+(?:из\s+)?[`'\"]?(?P<table>{_REF}|"
        rf"{'|'.join(JOIN_ENTITIES_RU)})[`'\"]?\s+по\s+(?:ключу\s+|полю\s+)?{_KEYS}",
    )
    for pattern in explicit:
        for m in list(sc.finditer(pattern)):
            _explicit_join(sc, d, m)
    _scan_possessive_joins(sc, d)
    _scan_keys_only(sc, d)


def _scan_keys_only(sc: Scanner, d: Draft) -> None:
    """"with the doctor's full_name (join on doctor_id)": the keys of the one join named otherwise; with no
    join or several, which table is joined is asked."""
    for m in list(sc.finditer(rf"\b(?:join(?:ed|ing)?|соедин\w*)\s+{_KEY_WORD}\s+(?:the\s+)?(?:key\s+|ключу\s+)?{_KEYS}")):
        on, right_on = _join_keys(m.group("keys"))
        if len(d.joins) != 1:
            d.ask("joins", f"Join which table on {', '.join(on)}?", f"С какой таблицей соединять по {', '.join(on)}?")
            sc.take(m)
            continue
        d.joins[0].update({"on": on, "right_on": right_on, "kind": "inner"})
        sc.take(m, f"inner join {d.joins[0]['table']} on {', '.join(on)}")


def _explicit_join(sc: Scanner, d: Draft, m: re.Match) -> None:
    g = m.groupdict()
    name = _join_table(g["table"])
    if name is None:
        return
    on, right_on = _join_keys(g["keys"])
    kind = (g.get("kind") or ("left" if g.get("enrich") else "inner")).lower()
    what = g.get("what") if (g.get("what") or "").lower() not in ("их", "его", "them", "it") else None
    if what and what.lower() not in ENTITY_NOUNS and not what.lower().endswith(("s", "и", "ы")):
        return  # "enrich <something> with ...": the word would be guessed into the subject
    if what:
        d.subject.append(what)
    _add_join(sc, d, m, {"table": name, "kind": kind, "on": on, "right_on": right_on, "columns": []})
    if g.get("src"):  # the source's name stays for the endpoint rules: only the words around it are consumed
        _release(sc, *m.span("src"))


def _release(sc: Scanner, start: int, end: int) -> None:
    """Unconsume a part of a consumed match: its words are for other rules."""
    sc.masked = sc.masked[:start] + sc.text[start:end] + sc.masked[end:]


def _join_table(word: str) -> Optional[str]:
    """A table named in a join: ``shop.customers``, "customers", «клиентами» (-> customers)."""
    low = word.lower()
    if low in JOIN_ENTITIES_RU:
        return JOIN_ENTITIES_RU[low]
    if "." in word or re.fullmatch(IDENT, word) and low not in STOPWORDS_EN and low not in ("it", "them"):
        return word
    return None


def _join_keys(text: str) -> tuple[list[str], list[str]]:
    """``customer_id`` / ``a, b`` -> on; ``orders.customer_id = customers.id`` -> on + right_on."""
    on: list[str] = []
    right: list[str] = []
    for part in re.split(r"\s*(?:,|\band\b|\bи\b)\s*", text.strip()):
        left, _, other = part.partition("=")
        on.append(left.strip().rsplit(".", 1)[-1])
        if other.strip():
            right.append(other.strip().rsplit(".", 1)[-1])
    return on, (right if len(right) == len(on) and right != on else [])


def _add_join(sc: Scanner, d: Draft, m: re.Match, join: dict[str, Any], guessed_keys: bool = False) -> None:
    """``guessed_keys``: a possessive ("the customer's city") guesses ``customer_id``; the same table joined
    explicitly ("joined with shop.customers on customer_id") keeps its own name, keys and kind."""
    short = join["table"].rsplit(".", 1)[-1]
    same = [j for j in d.joins if j["table"].rsplit(".", 1)[-1] == short]
    if same and guessed_keys:
        join = {**join, "table": same[0]["table"], "on": same[0]["on"], "right_on": same[0]["right_on"],
                "kind": same[0]["kind"]}
    if same and (same[0]["on"], same[0]["right_on"]) != (join["on"], join["right_on"]):
        d.ask("joins", f"{join['table']} is joined twice on different keys; which key?",
              f"{join['table']} присоединяется дважды по разным ключам; по какому?")
    elif same:
        same[0]["columns"] += [c for c in join["columns"] if c not in same[0]["columns"]]
    else:
        d.joins.append(join)
    keys = ", ".join(join["on"]) + (f" = {', '.join(join['right_on'])}" if join["right_on"] else "")
    cols = f" adding {', '.join(join['columns'])}" if join["columns"] else ""
    sc.take(m, f"{join['kind']} join {join['table']} on {keys}{cols}")


def _scan_possessive_joins(sc: Scanner, d: Draft) -> None:
    lead = r"(?:with|plus|along\s+with|together\s+with|including|adding|and\s+add(?:ing)?)"
    patterns = (
        rf"\b{lead}\s+(?:their|its|the|each\s+\w+'s)\s+(?P<ent>[A-Za-z]+)(?:'s|s')\s+{_COLS}",
        rf"\b{lead}\s+(?:their|its)\s+(?P<ent>[A-Za-z]+)\s+{_COLS}",
    )
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            ent = singular(m.group("ent").lower())
            if ent in STOPWORDS_EN or ent in ("own", "new", "old"):
                continue
            cols = [column_name(c) for c in re.split(r"\s*(?:,|\band\b|\bthe\b)\s*", m.group("cols")) if c]
            _add_join(sc, d, m, {"table": _plural(ent), "kind": "left", "on": [f"{ent}_id"], "right_on": [],
                                 "columns": cols}, guessed_keys=True)
    word = rf"(?:{'|'.join(_RU_COLUMN)}|[a-z][a-z0-9_]*)"
    cols_ru = rf"(?P<cols>{word}(?:\s*(?:,|и)\s*{word})*)"
    ents = "|".join(JOIN_ENTITIES_RU)
    for m in list(sc.finditer(rf"\b(?:с|вместе\s+с|добавив|добавляя)\s+{cols_ru}\s+(?P<ent>{ents})\b")):
        table = JOIN_ENTITIES_RU[m.group("ent").lower()]
        cols = [_RU_COLUMN.get(c.lower(), c) for c in re.split(r"\s*(?:,|\bи\b)\s*", m.group("cols")) if c]
        _add_join(sc, d, m, {"table": table, "kind": "left", "on": [f"{singular(table)}_id"], "right_on": [],
                             "columns": cols}, guessed_keys=True)


# instrumental ("с городом клиента") and accusative ("добавив город клиента") forms
_RU_COLUMN = {"городом": "city", "город": "city", "именем": "name", "имени": "name", "имя": "name",
              "почтой": "email", "почту": "email", "страной": "country", "страну": "country",
              "телефоном": "phone", "телефон": "phone", "названием": "title", "название": "title",
              "ценой": "price", "цену": "price", "категорией": "category", "категорию": "category",
              "специальностью": "specialty", "специальность": "specialty", "страховкой": "insurance",
              "страховку": "insurance"}


def _plural(word: str) -> str:
    if word.endswith("y") and not word.endswith(("ay", "ey", "oy", "uy")):
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


# --- top-N -----------------------------------------------------------------------------------------

_DESC = {"largest": "value", "biggest": "value", "highest": "value", "top": "value", "most expensive": "price",
         "priciest": "price", "costliest": "price", "latest": "time", "newest": "time", "most recent": "time",
         "last": "time", "крупнейших": "value", "самых крупных": "value", "самых больших": "value",
         "самых дорогих": "price", "последних": "time", "самых новых": "time", "свежих": "time"}
_ASC = {"smallest": "value", "lowest": "value", "cheapest": "price", "least expensive": "price",
        "oldest": "time", "earliest": "time", "самых мелких": "value", "самых маленьких": "value",
        "самых дешёвых": "price", "самых дешевых": "price", "самых старых": "time", "первых": "time"}
_ADJ = "|".join(sorted(map(lambda w: w.replace(" ", r"\s+"), {**_DESC, **_ASC}), key=len, reverse=True))
_NP = r"(?P<what>(?:[A-Za-zА-Яа-яЁё]+\s+){0,2}?[A-Za-zА-Яа-яЁё]+)"
_BY = (r"(?P<by>(?:total|overall|average|avg|mean|sum\s+of|number\s+of|count\s+of)?\s*(?:the\s+)?"
       rf"(?:[A-Za-z_][A-Za-z0-9_]*)(?:\s+(?:spent|count|paid|total|time|date|timestamp))?|общ\w+\s+\w+|"
       rf"средн\w+\s+\w+|сумм\w+\s+(?:оплат\w*|платеж\w*|платёж\w*|продаж\w*)|\w+)")


def scan_top_n(sc: Scanner, d: Draft) -> None:
    if not sc.has(rf"top|топ|first|перв|limit|capped|at\s+most|no\s+more|не\s+более|огранич|most|fewest|least|"
                  rf"наибольш|наименьш|самым|{_ADJ}"):
        return
    n = rf"(?P<n>{NUMBER_ANY})"
    by_word = r"\s+(?:by|in\s+terms\s+of|ranked\s+by|sorted\s+by|ordered\s+by|по)\s+"
    by = rf"{by_word}{_BY}"
    patterns = (
        rf"\b(?:the\s+)?(?:top|топ)[\s-]*{n}\s+(?:(?:most\s+)?{_NP}(?={by_word}))?{by}",
        rf"\b(?:the\s+)?(?:top|топ)[\s-]*{n}\s+(?P<adj>{_ADJ})\s+{_NP}(?:{by})?",
        rf"\b(?:the\s+)?{n}\s+(?P<adj>{_ADJ})\s+{_NP}(?:{by})?",
        rf"\b(?:the\s+)?(?P<adj>{_ADJ})\s+{n}\s+{_NP}(?:{by})?",
        rf"\b(?:the\s+)?(?:top|топ)[\s-]*{n}(?:\s+{_NP})?(?![\w-])",
        rf"\b(?:the\s+)?(?P<first>first|первые)\s+{n}\s+(?P<rows>rows|records|lines|entries|строк\w*|запис\w*)"
        rf"(?:{by})?",
        # "the first hundred patients by registration time": the earliest N rows by a column
        rf"\b(?:the\s+)?(?P<first>first|первые)\s+{n}\s+(?P<what>[A-Za-zА-Яа-яЁё]+){by}",
        rf"\b(?:limit(?:ed)?\s+(?:it\s+|to\s+|at\s+)*|capped\s+at\s+|at\s+most\s+|no\s+more\s+than\s+|"
        rf"не\s+более\s+|ограничив\w*\s+(?:до\s+)?){n}\s+(?P<rows>rows|records|lines|entries|строк\w*|запис\w*)",
    )
    # "the five customers with the most orders", «5 клиентов с наибольшим числом заказов»: groups ranked by
    # a measure (a count of rows, or the sum a money word names)
    most = (rf"\b(?:the\s+)?(?:top\s+)?{n}\s+(?P<what>[A-Za-z]+)\s+(?:with|having|who\s+(?:have|made|placed))\s+"
            rf"(?:the\s+)?(?P<dir>most|highest|largest|biggest|greatest|fewest|least|lowest)\s+(?:number\s+of\s+|"
            rf"count\s+of\s+|total\s+)?(?P<by>[A-Za-z_]+)",
            rf"\b(?:топ[\s-]*)?{n}\s+(?P<what>[а-яё]+)\s+с\s+(?P<dir>наибольш\w+|наименьш\w+|самым\s+большим|"
            rf"самым\s+маленьким)\s+(?:(?P<count>числом|количеством)\s+)?(?P<by>[а-яё]+)")
    # "the 3 most prescribed drugs", "the 10 most ordered products": rows counted per thing
    most += (rf"\b(?:the\s+)?(?:top\s+)?{n}\s+(?P<dir>most|least)\s+(?P<verb>[a-z]+ed)\s+(?P<what>[a-z]+s)\b",)
    for pattern in most:
        for m in list(sc.finditer(pattern)):
            count = number_value(m.group("n"))
            if not isinstance(count, int) or count <= 0 or m.group("what").lower() in STOPWORDS_EN:
                continue
            _set_limit(d, count)
            by = "number of rows" if m.groupdict().get("count") or m.groupdict().get("verb") else m.group("by")
            _order_by_phrase(d, by, m.group("what"),
                             descending=m.group("dir").lower() not in ("fewest", "least", "lowest")
                             and not m.group("dir").lower().startswith(("наименьш", "самым маленьким")))
            shown = ", ".join(f"{o['column']}{' desc' if o['descending'] else ''}" for o in d.order_by)
            sc.take(m, f"top {count} by {shown}")
            # "prescribed" with no table named is the only hint at what is moved: it stays for the catalog's
            # question ("Which table is 'prescribed': clinic.prescriptions?"); with a table named it is read
            if m.groupdict().get("verb") and not re.search(
                    r"\b(?:from|из|in)\s+(?:\w+\s+)?[\w-]+\.[A-Za-z_]\w*", sc.text[m.end():], re.I):
                _release(sc, *m.span("verb"))
    for pattern in patterns:  # after the ranked forms: "top 3 most booked rooms" is one of them
        for m in list(sc.finditer(pattern)):
            _top_n(sc, d, m)


def _top_n(sc: Scanner, d: Draft, m: re.Match) -> None:
    g = m.groupdict()
    count = number_value(g["n"])
    if not isinstance(count, int) or count <= 0:
        return
    _set_limit(d, count)
    adj = " ".join((g.get("adj") or "").lower().split())
    if g.get("by") and g.get("first") and not adj:
        d.order_by = [{"column": column_name(g["by"]), "descending": False}]
    elif g.get("by"):
        _order_by_phrase(d, g["by"], g.get("what") or "", descending=adj not in _ASC)
    elif adj:
        _order_by_adjective(d, adj, _head_phrase(g.get("what") or "", sc.text[m.end():]))
    elif g.get("rows"):
        d.notes.append(f"at most {count} rows, in no particular order (say 'by <column>' to choose which)")
    elif d.aggregate and len(d.aggregate["measures"]) == 1:
        d.order_by = [{"column": d.aggregate["measures"][0]["alias"], "descending": True}]
    else:
        d.ask("order_by", f"Top {count} by which column (e.g. 'top {count} by amount')?",
              f"Топ-{count} по какой колонке (например, 'топ-{count} по amount')?")
    shown = ", ".join(f"{o['column']}{' desc' if o['descending'] else ''}" for o in d.order_by)
    sc.take(m, f"top {count}" + (f" by {shown}" if shown else ""))
    # "biggest paid | orders": the match stopped at a modifier, whose noun follows; the modifier (a status
    # word) stays for the filter rules, or its rows would be lost
    # "highest glucose (GLU) readings": the words right before a parenthesised value are glossed by it (the
    # value is read by the filter rules; one that is no filter is asked about)
    gloss = re.match(r"(?:\s*[A-Za-zА-Яа-яЁё]+){0,2}(?=\s*\([^()]{1,40}\))", sc.masked[m.end():])
    if adj and g.get("what") and d.order_by == [{"column": "value", "descending": adj in _DESC}] and gloss:
        lead = len(gloss.group(0)) - len(gloss.group(0).lstrip())
        if gloss.group(0).strip():
            sc.take(Span(m.end() + lead, m.end() + gloss.end()), "what the value in parentheses names")
    elif adj and g.get("what") and _head_phrase("", sc.text[m.end():]):
        _release(sc, *m.span("what"))


def _set_limit(d: Draft, count: int) -> None:
    if d.limit is not None and d.limit != count:
        d.ask("limit", "Two different top-N sizes were given; how many rows?",
              "Указаны два разных размера топа; сколько строк нужно?")
    d.limit = count


def _head_phrase(what: str, rest: str) -> str:
    """The noun phrase after a ranking adjective up to its head: "biggest paid | orders from ...": the match
    stops early (a status word may sit between), so the words up to the next preposition are read too."""
    # a value in parentheses ("heart rate (HR) readings") is a filter for the filter rules, not part of the noun
    more = re.match(r"((?:\s*\([^()]{1,40}\))?(?:\s*(?!(?:from|into|to|in|of|by|for|with|per|on|at|из|в|во|по|с|за)\b)"
                    r"[A-Za-zА-Яа-яЁё]+(?:\s*\([^()]{1,40}\))?){0,2})", rest, re.I)
    words = re.sub(r"\([^()]*\)", " ", more.group(1)) if more else ""
    return " ".join((what + " " + words).split())


_READING_NOUNS = frozenset({"reading", "measurement", "value", "result", "level"})
_READING_RU = ("показани", "значени", "измерени", "результат")


def _order_by_adjective(d: Draft, adj: str, what: str) -> None:
    kind = _DESC.get(adj) or _ASC.get(adj)
    descending = adj in _DESC
    if kind == "time":
        d.order_by = [{"column": DEFAULT_TIME_COLUMN, "descending": descending}]
        d.default(f"'{adj}' orders by {DEFAULT_TIME_COLUMN} (say 'by <column>' to choose another)")
    elif kind == "price":
        d.order_by = [{"column": "price", "descending": descending}]
    elif not what or any(w.lower() in MONEY_NOUNS for w in what.split()):
        d.order_by = [{"column": "amount", "descending": descending}]
    elif any(singular(w.lower()) in _READING_NOUNS or w.lower().startswith(_READING_RU) for w in what.split()):
        # "the 5 highest glucose readings": a reading's number is its value column (the catalog check links
        # "value" to the source's column or asks which one it is)
        d.order_by = [{"column": "value", "descending": descending}]
    else:
        d.ask("order_by", f"'{adj} {what}' by which column?", f"'{adj} {what}' - по какой колонке?")


def _order_by_phrase(d: Draft, by: str, what: str, descending: bool) -> None:
    """"by amount" orders rows; "customers by revenue" ranks groups by a measure (an aggregate)."""
    # «по сумме оплат/платежей/продаж»: the sum of the money column, as «по сумме»
    by = re.sub(r"^(сумм\w*)\s+(?:оплат|платеж|платёж|продаж)\w*$", r"\1", by.strip(), flags=re.I)
    measure = parse_measure(by)
    last = what.split()[-1].lower() if what.strip() else ""
    head = GRAIN_RU.get(last) or singular(last)
    grain = head and head not in {singular(w) for w in MONEY_NOUNS | {"row", "record", "line", "entry"}}
    if measure is not None and grain:
        if d.aggregate is None:
            d.aggregate = {"period": None, "dimensions": [column_name(head)], "measures": [measure],
                           "time_column": None}
        elif measure not in d.aggregate["measures"]:
            d.aggregate["measures"].append(measure)
        d.order_by = [{"column": measure["alias"], "descending": descending}]
        return
    if measure is not None and d.aggregate is None:
        measure = None if measure["column"] is None else measure
    col = column_name(by.split()[-1]) if measure is None else measure["column"]
    if d.aggregate and measure is not None:
        col = next((x["alias"] for x in d.aggregate["measures"] if x["column"] == measure["column"]), col)
    d.order_by = [{"column": col, "descending": descending}]


# --- order without a limit -----------------------------------------------------------------------

_DIR_DESC = r"desc(?:ending)?|in\s+descending\s+order|descending|(?:highest|largest|biggest|newest|latest|most\s+recent)\s+first|по\s+убыванию"
_DIR_ASC = r"asc(?:ending)?|in\s+ascending\s+order|ascending|(?:lowest|smallest|oldest|earliest)\s+first|по\s+возрастанию"


def scan_order(sc: Scanner, d: Draft) -> None:
    """"sorted by created_at", "ordered by amount descending", «отсортировав по amount по убыванию»."""
    if not sc.has(r"sort|order|rank|сортир|упорядоч"):
        return
    direction = rf"(?:\s+(?:(?P<desc>{_DIR_DESC})|(?P<asc>{_DIR_ASC})))?"
    for pattern in (rf"\b(?:sorted|sort(?:ing)?|ordered|order(?:ing)?|ranked|rank(?:ing)?)\s+(?:it\s+|them\s+|(?:the\s+)?"
                    rf"rows\s+)?by\s+(?:the\s+)?{column('col')}{direction}",
                    rf"\b(?:от|пере)?сортир\w*\s+по\s+{column('col', True)}{direction}",
                    rf"\bупорядоч\w*\s+по\s+{column('col', True)}{direction}"):
        for m in list(sc.finditer(pattern)):
            col = column_name(m.group("col"))
            measure = next((x["alias"] for x in (d.aggregate or {}).get("measures", []) if col in (x["column"], x["alias"])),
                           None)
            d.order_by = [{"column": measure or col, "descending": bool(m.group("desc"))}]
            sc.take(m, f"order by {measure or col}{' desc' if m.group('desc') else ''}")


# --- renames ---------------------------------------------------------------------------------------

_ARROW = r"(?:-+>|→|⟶|=>)"


def scan_rename(sc: Scanner, d: Draft) -> None:
    if not sc.has(rf"renam|call|nam(?:e|ed|ing)\s|label|переимен|назов|назва|as\s+a\s+column|\bthe\s+(?:count|sum|total|"
                  rf"average|avg|mean|max|min)|количеств|суммой|средним|{_ARROW}"):
        return
    new = rf"[`'\"]?(?P<new>{IDENT})[`'\"]?"
    # "rename account_id to id and title to name", «переименуй phone в mobile, email в mail»: one or more pairs
    pair = rf"{column('old')}(?:\s+column)?\s+(?:to|as|into|{_ARROW})\s*{new}"
    more = rf"(?:\s*(?:,|and)\s*(?:the\s+)?{NOT_A_COLUMN}{IDENT}\s+(?:to|as|into|{_ARROW})\s*[`'\"]?{IDENT}[`'\"]?(?![\w.]))*"
    pair_ru = rf"{column('old', True)}\s+(?:в|{_ARROW})\s*{new}"
    more_ru = rf"(?:\s*(?:,|и)\s*{IDENT}\s+(?:в|{_ARROW})\s*[`'\"]?{IDENT}[`'\"]?(?![\w.]))*"
    patterns = (
        rf"\brenam(?:e|ed|es|ing)\s+(?:the\s+)?(?:columns?\s+|fields?\s+)?{pair}{more}",
        rf"\b(?:with\s+)?(?:the\s+)?{column('old')}\s+(?:column\s+)?renamed\s+(?:to|as)\s+{new}",
        rf"\bпереимен\w*\s+(?:колонк\w+\s+|пол[ея]\s+|столбц?\w*\s+)?{pair_ru}{more_ru}",
        rf"(?:\b(?:колонку|поле|столбец)\s+)?{column('old', True)}\s+переимен\w*\s+в\s+{new}",
        # "..., phone -> mobile", "with phone → mobile": an arrow between two plain names after a comma, a
        # semicolon, a parenthesis or "with" (an arrow between endpoints is "the target follows")
        rf"(?:(?<=[,;:(]\s)|(?<=[,;:(])|\bwith\s+|\bс\s+){column('old')}\s*{_ARROW}\s*(?!(?:{ENGINE_WORDS})\b){new}(?![\w.])"
        rf"(?:\s*(?:,|and|и)\s*{IDENT}\s*{_ARROW}\s*(?!(?:{ENGINE_WORDS})\b)[`'\"]?{IDENT}[`'\"]?(?![\w.]))*",
    )
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            pairs = [(column_name(old), new_name) for old, new_name in _rename_pairs(m, m.start("old"))]
            for old, new_name in pairs:
                _rename(sc, d, m, old, new_name, take=False)
            sc.take(m, "rename " + ", ".join(f"{old} -> {new_name}" for old, new_name in pairs))
    its = (rf"\b(?:and\s+)?(?:call(?:ing)?|nam(?:e|ing)|label(?:ling|ing)?)\s+(?:it|that|this|the\s+result|"
           rf"the\s+(?:sum|total|count|average|measure|column|metric))\s+(?:as\s+)?{new}",
           rf"\b(?:назов\w*|назвав)\s+(?:это|её|его|результат|колонку)\s+{new}",
           rf"\bas\s+a\s+column\s+(?:called|named)\s+{new}",
           rf"\b(?:with\s+|and\s+)?the\s+(?:count|sum|total|average|avg|mean|maximum|minimum|max|min)\s+(?:column\s+)?"
           rf"(?:as|named|called)\s+{new}",
           rf"\b(?:(?:с\s+)?(?:количеством|суммой|средним)|(?:количество|сумму|среднее)\s+назов\w*)\s+(?:как\s+)?{new}")
    for it in its:
        for m in list(sc.finditer(it)):
            _call_it(sc, d, m, m.group("new"))
    if (d.aggregate or {}).get("measures"):
        _scan_output_names(sc, d)  # else after the column selection: the names may be for the selected columns


def _rename_pairs(m: re.Match, start: int) -> list[tuple[str, str]]:
    """The (old, new) pairs of a rename match, from its first column on."""
    text = m.string[start:m.end()]
    found = re.findall(rf"(?:^|,|\band\b|\bи\b)\s*(?:the\s+)?({IDENT})(?:\s+column)?\s*(?:\bto\b|\bas\b|\binto\b|\bв\b|"
                       rf"{_ARROW})\s*[`'\"]?({IDENT})", text)
    return found or [(m.group("old"), m.group("new"))]


def _rename(sc: Scanner, d: Draft, m: re.Match, old: str, new: str, take: bool = True) -> None:
    measure = next((x for x in (d.aggregate or {}).get("measures", []) if old in (x["column"], x["alias"])), None)
    if measure is not None:
        measure["alias"] = new
    elif d.rename.get(old, new) != new:
        d.ask("rename", f"{old} is renamed twice; to which name?", f"{old} переименован дважды; как назвать?")
    else:
        d.rename[old] = new
    if take:
        sc.take(m, f"rename {old} -> {new}")


def _scan_output_names(sc: Scanner, d: Draft) -> None:
    # "with the columns named orders and revenue", "naming them orders, revenue", «назови колонки orders и
    # revenue»: names for the outputs, in the order they were asked for
    names = rf"(?P<names>{IDENT}(?:\s*(?:,|and|и)\s*{IDENT})*)(?![\w.])"
    for pattern in (rf"\b(?:with\s+|and\s+)?(?:the\s+)?(?:output\s+|result\s+)?(?:columns?|fields?)\s+(?:named|called)\s+"
                    rf"(?:as\s+)?{names}",
                    rf"\b(?:and\s+)?(?:nam(?:e|ing)|call(?:ing)?|label(?:ling|ing)?)\s+(?:them|the\s+(?:output\s+|result\s+)?"
                    rf"(?:columns|fields|measures|results|outputs))\s+(?:as\s+)?{names}",
                    rf"\b(?:назов\w*|назвав|назвать)\s+(?:их|колонки|столбцы|поля|результаты)\s+{names}",
                    rf"\b(?:колонки|столбцы|поля)\s+(?:назов\w*|назвав|назвать)\s+{names}",
                    rf"\bс\s+(?:названиями|именами)\s+(?:колонок\s+|столбцов\s+)?{names}"):
        for m in list(sc.finditer(pattern)):
            _name_outputs(sc, d, m, [n for n in re.split(r"\s*(?:,|\band\b|\bи\b)\s*", m.group("names")) if n])


def _name_outputs(sc: Scanner, d: Draft, m: re.Match, names: list[str]) -> None:
    """Names for the aggregate's measures (or the selected columns), one each, in order; any other count is
    a question: which name goes to which column is not guessed."""
    measures = (d.aggregate or {}).get("measures", [])
    if measures and len(names) == len(measures):
        for measure, name in zip(measures, names):
            measure["alias"] = name
        sc.take(m, "name the measures " + ", ".join(f"{x['fn']}({x['column'] or '*'}) {x['alias']}" for x in measures))
    elif not measures and d.select and len(names) == len(d.select):
        for col, name in zip(d.select, names):
            _rename(sc, d, m, col, name, take=False)
        sc.take(m, "rename " + ", ".join(f"{c} -> {n}" for c, n in zip(d.select, names)))
    else:
        count = len(measures) or len(d.select)
        d.ask("rename", f"{len(names)} names ({', '.join(names)}) for {count or 'no'} computed or selected columns; "
                        f"which column gets which name (e.g. 'rename X to Y')?",
              f"{len(names)} имён ({', '.join(names)}) на {count} колонок; какой колонке какое имя (например, "
              f"'переименуй X в Y')?")
        sc.take(m)


def _call_it(sc: Scanner, d: Draft, m: re.Match, new: str) -> None:
    measures = (d.aggregate or {}).get("measures", [])
    if len(measures) == 1:
        measures[0]["alias"] = new
        sc.take(m, f"name the measure {new}")
    elif len(d.select) == 1:
        _rename(sc, d, m, d.select[0], new)
    else:
        d.ask("rename", f"Which column should be called {new}?", f"Какую колонку назвать {new}?")
        sc.take(m)


# --- column selection ------------------------------------------------------------------------------

# "keeping only a and b, naming the columns x and y": a naming verb ends the list
_ITEM = rf"(?:the\s+)?(?!(?:naming|calling|labell?ing|named|called|renaming|rename)\b){IDENT}(?:\.{IDENT})?(?:(?:\s+(?:as|как)\s+|\s*{_ARROW}\s*){IDENT}(?![\w.]))?"
_LIST = rf"(?P<list>{_ITEM}(?:\s*(?:,|and|и)\s*{_ITEM})*)"
_COLUMNS = r"(?:columns?|fields?|колонк\w*|пол(?:я|е)|столбц\w*|столбец)"


def scan_select(sc: Scanner, d: Draft) -> None:
    _scan_selection(sc, d)
    _scan_output_names(sc, d)


def _scan_selection(sc: Scanner, d: Draft) -> None:
    if not sc.has(r"only|just|select|keep|retain|taking|column|field|только|колонк|пол[яе]|столб|\w\s*\(\s*\w+\s*,|"
                  r"\w:\s*\w+\s*,"):
        return
    only = r"(?:only|just|keeping\s+only|keep\s+only|selecting|select|taking\s+only|with\s+only|только)"
    patterns = (
        (rf"\b{only}\s+(?:the\s+)?{_COLUMNS}\s+{_LIST}", 1),
        (rf"\b{only}\s+(?:the\s+)?{_LIST}\s+{_COLUMNS}\b", 1),
        (rf"\b(?:keeping|keep|selecting|select|with|taking|с|оставив|оставляя|выбрав|взяв)\s+(?:the\s+)?{_COLUMNS}\s+"
         rf"{_LIST}", 1),
        (rf"\b{only}\s+{_LIST}", 2),
        # "keeping result_id, test_code and value", "with order_id and status only": a list of two or more
        (rf"\b(?:keeping|keep|retaining|retain)\s+{_LIST}(?=\s*$|\s*[,.;)]|\s+(?:from|into|to|in|and\s+load)\b)", 2),
        (rf"\b(?:with\s+)?{_LIST}\s+only\b", 2),
        # "Load patients (patient_id, city, insurance) into ...": a column list in parentheses after a noun or name
        (rf"(?<=\w)\s*\(\s*(?P<list>{IDENT}(?:\s*,\s*{IDENT})+)\s*\)", 2),
        # "shop.customers to CH analytics.contacts: customer_id, email, phone; rename ...": the list after the
        # endpoints' colon, up to the end of the clause
        (rf"(?<=\w):\s*{_LIST}(?=\s*(?:$|[;.)\x1f]))", 2),
    )
    for pattern, least in patterns:
        for m in list(sc.finditer(pattern)):
            _select(sc, d, m, least)
    for m in list(sc.finditer(r"\b(?:keeping|keep|taking|take)\s+(?=only\s+(?:the\s+)?(?:rows|records|ones|entries|those)\b)")):
        sc.take(m, "keep only the rows the filters say")  # "keeping only the rows flagged H"


def _select(sc: Scanner, d: Draft, m: re.Match, least: int) -> None:
    items = [i for i in re.split(r"\s*(?:,|\band\b|\bи\b)\s*", m.group("list")) if i]
    names: list[tuple[str, Optional[str]]] = []
    for item in items:
        old, _, new = re.sub(r"^the\s+", "", item, flags=re.I).partition(" as ")
        if " как " in item or re.search(_ARROW, item):
            old, new = (re.split(rf"\s+как\s+|\s*{_ARROW}\s*", item, maxsplit=1) + [""])[:2]
        word = old.strip().lower()
        plural_noun = word in ENTITY_NOUNS and word.endswith(("s", "ы", "и", "ов", "ей"))  # "fee" may be a column
        if word in STOPWORDS_EN or word in STOPWORDS_RU or plural_noun or word in ("rows", "records"):
            return  # "only paid orders and rows ...": not a list of columns
        names.append((column_name(old.strip()), new.strip() or None))
    if len(names) < least:
        return
    for col, new in names:
        if col not in d.select:
            d.select.append(col)
        if new:
            d.rename[col] = new
    sc.take(m, "select " + ", ".join(c + (f" as {n}" if n else "") for c, n in names))


# --- steps -----------------------------------------------------------------------------------------

def shaping_steps(spec: dict[str, Any]) -> list[str]:
    """Human-readable plan lines for the shaping fields of a spec dict."""
    steps = []
    for j in spec.get("joins") or []:
        keys = ", ".join(j["on"]) + (f" = {', '.join(j['right_on'])}" if j["right_on"] else "")
        cols = f", adding {', '.join(j['columns'])}" if j["columns"] else ""
        steps.append(f"{j['kind'].capitalize()} join {j['table']} on {keys}{cols}")
    if spec.get("select"):
        steps.append("Keep columns " + ", ".join(spec["select"]))
    if spec.get("order_by"):
        steps.append("Order by " + ", ".join(o["column"] + (" descending" if o["descending"] else "")
                                             for o in spec["order_by"]))
    if spec.get("limit"):
        steps.append(f"Keep the first {spec['limit']} rows")
    if spec.get("rename"):
        steps.append("Rename " + ", ".join(f"{a} to {b}" for a, b in spec["rename"].items()))
    return steps
