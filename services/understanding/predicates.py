"""Row filters said in words: null checks ("skipping rows where email is missing", «без пустых email»),
comparisons with spelled-out numbers and units ("over $100", "more than a thousand", «больше тысячи»)
and status lists ("paid or shipped orders", "excluding cancelled ones", «кроме отменённых»).
"""
from __future__ import annotations

import re
from typing import Any, Optional

from .draft import Draft
from .lexicon import (ENGINES, ENTITY_NOUNS, IDENT, MEASURE_NOUNS_RU, MONEY_NOUNS, NOT_A_COLUMN, STATUS_WORDS, STATUS_WORDS_RU, STOPWORDS_EN,
                      STOPWORDS_RU, VERBS, column)
from .linking import names_column, names_value
from .numbers import AMOUNT, NUMBER_ANY, PERCENT_AFTER, amount_value, number_value
from .operations import add_filter, column_name, literal
from .scanner import Scanner, Span

_ROWS = (r"(?:the\s+|any\s+|all\s+)?(?:rows?|records?|entries|entry|lines?|ones|orders?|customers?|users?|"
         r"payments?|events?|items?|patients?|visits?|transactions?|contacts?|accounts?|products?|"
         + "|".join(sorted((w for w in ENTITY_NOUNS if re.fullmatch(r"[a-z]+s", w)), key=len, reverse=True)) + ")")
_NULL_WORDS = (r"(?:missing|null|nulls|empty|blank|absent|not\s+set|unset|unknown|not\s+filled(?:\s+in)?|na|n/a|"
               r"nan|not\s+given|not\s+provided|not\s+available)")
_PRESENT_WORDS = (r"(?:not\s+(?:null|empty|blank|missing)|present|set|filled(?:\s+in)?|known|non-?empty|non-?null|"
                  r"available|provided|given)")
_SKIP = (r"(?:skipping|skip|ignoring|ignore|excluding|exclude|dropping|drop|removing|remove|filtering\s+out|"
         r"filter\s+out|leaving\s+out|leave\s+out|omitting|omit|discarding|discard|except(?:\s+for)?|but\s+not)")
_END = r"(?=\s*$|\s*[,.;)(]|\s*(?:->|=>|-)\s|\s+(?:and|or|from|into|to|in|on|then|also|before|after|while|when|per|by)\b)"
_RU_COLUMNS = {"почта": "email", "почты": "email", "почтой": "email", "почту": "email", "email'а": "email",
               "телефон": "phone", "телефона": "phone", "телефоном": "phone", "телефонов": "phone",
               "город": "city", "города": "city", "городом": "city", "имя": "name", "имени": "name",
               "именем": "name", "страна": "country", "страны": "country", "страной": "country",
               "сумма": "amount", "суммы": "amount", "суммой": "amount", "emailов": "email",
               "email-ов": "email", "емейла": "email", "емейлом": "email"}
_RU_PLURALS = "|".join(sorted((w for w in ENTITY_NOUNS if re.search(r"[а-яё]", w)), key=len, reverse=True))
_RU_COL = rf"(?P<col>{'|'.join(sorted(_RU_COLUMNS, key=len, reverse=True))}|{IDENT})"


def unique_groups(pattern: str) -> str:
    """Number repeated group names ("col", "col", ... -> "col", "col_2", ...): alternatives may each name
    the column; ``_col`` takes whichever matched."""
    seen: dict[str, int] = {}

    def rename(g: re.Match) -> str:
        seen[g.group(1)] = seen.get(g.group(1), 0) + 1
        n = seen[g.group(1)]
        return g.group(0) if n == 1 else f"(?P<{g.group(1)}_{n}>"
    return re.sub(r"\(\?P<(\w+)>", rename, pattern)


def _col(m: re.Match) -> str:
    word = next(v for k, v in m.groupdict().items() if v and re.fullmatch(r"col(?:\d|_\d+)?", k))
    return _RU_COLUMNS.get(word.lower()) or column_name(singular_column(word))


def singular_column(word: str) -> str:
    """"emails" / "phones" after "without" name one column each row has or lacks."""
    low = word.lower()
    if low.endswith("s") and re.fullmatch(IDENT, word) and low not in ("status", "address", "sales"):
        return word[:-1]
    return word


def _null_filter(sc: Scanner, d: Draft, m: re.Match, op: str) -> None:
    col = _col(m)
    if col.lower() in STOPWORDS_EN:
        return
    # "prescriptions where the dose is blank": the noun names what is moved (the catalog's table), not the filter
    lead = re.match(r"(?:only\s+)?(?:the\s+|any\s+|all\s+)?([^\W\d_]+)\s+", m.group(0), re.I)
    if lead and lead.group(1).lower() in ENTITY_NOUNS and m.start() + lead.end() <= m.start(col_group(m)):
        m = Span(m.start() + lead.end(), m.end())
    add_filter(sc, d, m, col, op)


def col_group(m: re.Match) -> str:
    return next(k for k, v in m.groupdict().items() if v and re.fullmatch(r"col(?:\d|_\d+)?", k))


_PLURAL_NOUNS = "|".join(sorted((w for w in ENTITY_NOUNS if re.fullmatch(r"[a-z]+s", w)), key=len, reverse=True))
_NOT_YET = r"(?:\s+(?:on\s+file|yet|recorded|set|given|specified|listed|at\s+all))?"


def scan_null_filters(sc: Scanner, d: Draft) -> None:
    if not sc.has(r"missing|null|empty|blank|absent|set\b|unknown|filled|\bna\b|n/a|nan|given|provided|available|"
                  r"without|no\s|lacking|ha(?:ve|s|ving)|contain|present|known|valid|some\s|пуст|без|заполн|"
                  r"указан|отсутств|только"):
        return
    c = column("col", compound=True)
    present = (
        rf"\b{_SKIP}\s+{_ROWS}?\s*(?:where|whose|in\s+which|when|if)\s+(?:the\s+|their\s+|its\s+)?{c}\s+"
        rf"(?:is|are|was|were)\s+{_NULL_WORDS}\b",
        rf"\b{_SKIP}\s+{_ROWS}?\s*(?:with(?:out)?\s+(?:an?\s+|the\s+)?(?:missing|null|empty|blank|no)\s+{c}|"
        rf"without\s+(?:an?\s+|the\s+|any\s+)?{c}|(?:missing|lacking)\s+(?:an?\s+|the\s+)?{c}|"
        rf"that\s+(?:have|has)\s+no\s+{c}|(?:having|with)\s+no\s+{c}){_END}",
        rf"\b{_SKIP}\s+(?:the\s+|any\s+|all\s+)?(?:missing|null|empty|blank)\s+{c}{_END}",
        rf"\b(?:only\s+)?{_ROWS}\s+(?:that|which|who)\s+(?:have|has|contain|contains)\s+(?:an?\s+|the\s+|some\s+|a\s+"
        rf"non-?empty\s+|a\s+valid\s+)?{c}{_END}",
        rf"\b(?:only\s+)?{_ROWS}\s+(?:with|having)\s+(?:an?\s+|a\s+non-?empty\s+|a\s+non-?null\s+|a\s+valid\s+|"
        rf"some\s+)(?!positive|negative|non-negative|non-zero){c}{_END}",
        rf"\b(?:with|having|whose)\s+(?:an?\s+|the\s+)?(?:known|recorded|specified|given|"
        rf"filled(?:[\s-]in)?|non-?blank)\s+{c}{_END}",
        rf"(?:\b|^)у\s+которых\s+(?:есть|указан\w*|заполнен\w*|известн\w*)\s+(?:[а-яё]+\s+)?(?:\(\s*{IDENT.join(['(?P<col>', ')'])}"
        rf"\s*\)|{_RU_COL})",
        rf"\b(?:where|with|whose|when)\s+(?:the\s+)?{c}\s+(?:is|are)\s+{_PRESENT_WORDS}\b",
        rf"\bwith\s+(?:an?\s+)?non-?(?:empty|null|blank)\s+{c}",
        rf"\bwith\s+(?:the\s+)?{c}\s+filled(?:\s+in)?\b",
        rf"\bбез\s+(?:пуст\w+|null|NULL|незаполненн\w+)\s+(?:значений\s+)?(?:в\s+)?{_RU_COL}",
        rf"\b(?:пропуская|исключая|игнорируя|отбрасывая|убирая|выкидывая|кроме)\s+(?:строк\w*|запис\w*|тех)?,?\s*"
        rf"(?:без\s+{_RU_COL}|с\s+пуст\w+\s+{_RU_COL}|где\s+{_RU_COL}\s+"
        rf"(?:пуст\w*|не\s+указан\w*|не\s+заполнен\w*|отсутствует|null))",
        rf"\bгде\s+{_RU_COL}\s+(?:не\s+пуст\w*|заполнен\w*|указан\w*|есть|не\s+null|is\s+not\s+null)",
        rf"\b(?:только\s+)?(?:строк\w*|запис\w*|\w+)?\s*с\s+(?:заполненн\w+|непуст\w+|указанн\w+)\s+{_RU_COL}",
        rf"\bтолько\s+(?:строк\w*|запис\w*|клиент\w*|пользовател\w*|пациент\w*|заказ\w*)\s+с\s+{_RU_COL}",
    )
    for pattern in present:
        for m in list(sc.finditer(unique_groups(pattern))):
            _null_filter(sc, d, m, "not_null")
    absent = (
        rf"\b(?:only\s+)?{_ROWS}?\s*(?:where|whose)\s+(?:the\s+)?{c}\s+(?:is|are)\s+{_NULL_WORDS}\b",
        rf"\b(?:who|that|which)\s+(?:have|has|had)\s+no\s+{c}{_NOT_YET}{_END}",
        rf"\b(?:who|that|which)\s+(?:do|does|did)\s*(?:not|n't)\s+have\s+(?:an?\s+|any\s+|the\s+)?"
        rf"{c}{_NOT_YET}{_END}",
        rf"(?:\b|^)у\s+которых\s+(?:нет|не\s+указан\w*|не\s+заполнен\w*|пуст\w*|отсутствует)\s+(?:[а-яё]+\s+)?"
        rf"(?:\(\s*{IDENT.join(['(?P<col>', ')'])}\s*\)|{_RU_COL})",
        # «без указанного канала записи (channel пустой)»: the parenthesis names the column
        rf"(?:\b|^)(?:без\s+(?:указанн\w+\s+|заполненн\w+\s+)?(?:[а-яё]+\s+){{1,2}})?\(\s*{IDENT.join(['(?P<col>', ')'])}\s+"
        rf"(?:пуст\w*|не\s+указан\w*|is\s+(?:null|empty|missing|blank)|null|empty|missing|blank)\s*\)",
        rf"\b(?:only\s+)?{_ROWS}\s+(?:without|with\s+no|missing|lacking|that\s+(?:have|has)\s+no|having\s+no)\s+"
        rf"(?:an?\s+|the\s+|any\s+)(?!\w+\s+column){c}{_END}",
        rf"\bгде\s+{_RU_COL}\s+(?:пуст\w*|не\s+указан\w*|не\s+заполнен\w*|отсутствует|null|is\s+null)",
        # «пациентов без телефона», «строки без email»: rows that lack it (a column left out is «без колонки X»)
        rf"(?:(?<=\s)|^)(?=(?:строк\w*|запис\w*|{_RU_PLURALS}|клиенты|пациенты|врачи|заказы|приёмы|приемы|визиты|"
        rf"назначения|анализы|пользователи|товары)\s+без\s)\S+\s+без\s+(?:указанн\w+\s+|заполненн\w+\s+)?"
        rf"(?!колонк|пол[яей]|столбц){_RU_COL}",
    )
    for pattern in absent:
        for m in list(sc.finditer(unique_groups(pattern))):
            _null_filter(sc, d, m, "is_null")
    # "patients without insurance", "customers with no phone": after a noun for rows, a row filter (at the end of
    # the request "without email" may mean leaving the column out, and stays a question)
    lacking = (rf"\b(?:{_PLURAL_NOUNS}|rows|records|ones|those)\s+(?P<rest>(?:without|with\s+no|lacking)\s+(?:an?\s+|any\s+)?"
               rf"(?!(?:{'|'.join(STATUS_WORDS)}|{_PLURAL_NOUNS})\b)(?:known\s+|recorded\s+|specified\s+)?(?!\w+\s+column){c}"
               rf"{_NOT_YET}{_END})")
    for m in list(sc.finditer(lacking)):
        col = _col(m)
        if col.lower() not in STOPWORDS_EN:
            add_filter(sc, d, Span(m.start("rest"), m.end("rest")), col, "is_null")
    if any(f["op"] == "not_null" for f in d.filters):  # "rows that have a value (drop the NA ones)": said twice
        for m in list(sc.finditer(r"\(\s*(?:drop(?:ping)?|skip(?:ping)?|exclud(?:e|ing)|without|no)\s+(?:the\s+|any\s+)?"
                                  r"(?:NA|N/A|NaN|null|empty|missing|blank)s?(?:\s+(?:ones|rows|values|records))?\s*\)")):
            sc.take(m, "the same not-null filter")


# --- a filter in parentheses, and the words it explains ----------------------------------------------

_PAREN_OPS = {"=": "=", "==": "=", ":": "=", "is": "=", "!=": "!=", "<>": "!=", "is not": "!=", ">": ">",
              ">=": ">=", "<": "<", "<=": "<="}
_PAREN_VALUE = r"(?:'[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?|[^\W\d][\w\-]*)"
_PAREN_COL = rf"{NOT_A_COLUMN}{IDENT}"
_PAREN_COND = rf"{_PAREN_COL}\s*(?:==|=|!=|<>|>=|<=|>|<|:|\bis\s+not\b|\bis\b)\s*{_PAREN_VALUE}"
_LIST_SEP = r"\s*(?:,|\band\b|\bor\b|\bи\b|\bили\b)\s*"
# A bare list ("country DE", «country KZ и RU») names values the way data spells codes and names.
_CODE = re.compile(r"'[^']*'|\"[^\"]*\"|[A-ZА-ЯЁ][\w\-]*")
_PREPOSITIONS = frozenset("from in by via at of on with through over under из в во по с со от на для через".split())
_CONJ = frozenset({"and", "or", "и", "или"})
# A participle says how a row came to be what the parenthesis says ("booked online", "living in Kazan",
# «записанные по телефону»); an adjective ("active", «активных») adds a condition of its own.
_PARTICIPLE = re.compile(r"(?:\w{3,}(?:ed|ing)|\w+(?:нн|ем|им|ющ|ящ|ущ|ащ|вш|т)(?:ые|ый|ая|ое|ых|ого|ой|ую|ым|ыми|ий|ие|их))$",
                         re.I)


def scan_parenthesised_filters(sc: Scanner, d: Draft) -> None:
    """"German orders (country DE)", «клиентов из Москвы (city = Moscow)», «заказы из Казахстана и России
    (country KZ и RU)», "(country in (KZ, RU))": a filter in parentheses is what the words right before it
    mean. Those words ("German", «из Москвы», «записанные по телефону») are explained by it when one of them
    names its value or column (linking.names_value / names_column); a word that names neither ("active
    German orders (country DE)": "active") is left, and the compiler asks about it."""
    if "(" not in sc.masked:
        return
    patterns = (
        rf"\(\s*(?P<col>{_PAREN_COL})\s+(?P<neg>not\s+)?in\s*\((?P<items>[^()]*)\)\s*\)",
        rf"\(\s*(?P<conds>{_PAREN_COND}(?:\s*(?:,|\band\b|\bи\b)\s*{_PAREN_COND})*)\s*\)",
        rf"\(\s*(?P<col>{_PAREN_COL})\s+(?P<items>{_PAREN_VALUE}(?:{_LIST_SEP}{_PAREN_VALUE})*)\s*\)",
    )
    for i, pattern in enumerate(patterns):
        for m in list(sc.finditer(pattern)):
            found = _paren_filters(m, i)
            if not found:
                continue
            for f in found:
                if f not in d.filters:
                    d.filters.append(f)
            meaning = "filter " + " AND ".join(f"{f['column']} {f['op']}" + ("" if f["value"] is None else f" {f['value']!r}")
                                               for f in found)
            sc.take(m, meaning)
            explained_before(sc, m.start(), found, meaning)


def _paren_filters(m: re.Match, form: int) -> list[dict[str, Any]]:
    if form == 1:
        out = []
        for part in re.split(r"\s*(?:,|\band\b|\bи\b)\s*(?=[A-Za-z_])", m.group("conds"), flags=re.I):
            c = re.fullmatch(rf"({IDENT})\s*(==|=|!=|<>|>=|<=|>|<|:|is\s+not|is)\s*({_PAREN_VALUE})", part.strip(), re.I)
            if c is None:
                return []
            op = _PAREN_OPS[" ".join(c.group(2).lower().split())]
            if re.fullmatch(r"null|empty|missing|blank", c.group(3), re.I) and op in ("=", "!="):
                out.append({"column": c.group(1), "op": "is_null" if op == "=" else "not_null", "value": None})
                continue  # "(channel is null)", "(email is not empty)"
            out.append({"column": c.group(1), "op": op, "value": literal(c.group(3))})
        return out
    col, items = m.group("col"), [v for v in re.split(_LIST_SEP, m.group("items").strip(), flags=re.I) if v]
    if not items or (form == 2 and not all(_CODE.fullmatch(v) for v in items)):
        return []  # "(per day)", "(count as n)": not a column and its values
    values = [literal(v) for v in items]
    negated = form == 0 and bool(m.group("neg"))
    if len(values) == 1:
        return [{"column": col, "op": "!=" if negated else "=", "value": values[0]}]
    return [{"column": col, "op": "not_in" if negated else "in", "value": values}]


def explained_before(sc: Scanner, start: int, found: list[dict[str, Any]], meaning: str,
                     after_related: bool = False) -> None:
    """Claim the words before the parenthesis that it explains, nearest first: words naming a value or
    column, the preposition or conjunction between them («из Казахстана и России»), one participle before
    such a preposition («записанные по телефону», "booked by phone"); nouns of what is moved are passed
    over ("German orders"). Anything else ends the phrase."""
    values = [str(v) for f in found for v in (f["value"] if isinstance(f["value"], list) else [f["value"]])]
    columns = [f["column"] for f in found]
    tokens = list(re.finditer(r"[^\W\d_][\w'-]*|\S", sc.masked[:start]))[-10:]

    def kind(t: re.Match) -> str:
        w = t.group(0)
        low = w.lower()
        if not w[0].isalpha():
            return "," if w == "," else "stop"
        if low in VERBS or low in ENGINES:
            return "stop"
        if any(names_value(w, v) for v in values) or any(names_column(w, c) for c in columns):
            return "related"
        if low in _PREPOSITIONS:
            return "prep"
        if low in _CONJ:
            return "conj"
        if low in STOPWORDS_EN or low in STOPWORDS_RU or low in ENTITY_NOUNS:
            return "filler"
        return "other"

    kinds = [kind(t) for t in tokens]
    # last: the kind of the nearest word taken so far (fillers aside); after_related: ``start`` is a value
    last, claimed = ("related" if after_related else None), []
    for i in range(len(tokens) - 1, -1, -1):
        k, further = kinds[i], next((x for x in reversed(kinds[:i]) if x != "filler"), None)
        if k == "filler":
            continue
        if k == "related" or (k == "prep" and last == "related") or (
                k == "conj" and last == "related" and further == "related"):
            claimed.append(tokens[i])
        elif k == "," and last == "related" and further == "related":
            pass
        elif k == "other" and last in ("prep", "related") and _PARTICIPLE.search(tokens[i].group(0)):
            claimed.append(tokens[i])
            k = "participle"
        else:
            break
        last = k
    runs: list[list[int]] = []
    for t in sorted(claimed, key=lambda t: t.start()):  # adjacent words are one phrase in `understood`
        if runs and not sc.masked[runs[-1][1]:t.start()].strip():
            runs[-1][1] = t.end()
        else:
            runs.append([t.start(), t.end()])
    for a, b in runs:
        sc.take(Span(a, b), f"explained by the {meaning}")


# --- where-clauses in words ------------------------------------------------------------------------

def scan_where_clauses(sc: Scanner, d: Draft) -> None:
    """"where amount is greater than 50 and status is paid", «где сумма больше 1000 и status = 'paid'»: the
    whole chain at once (before the single-phrase rules take pieces of it); a chain with a part no
    condition form explains is left to them."""
    if not sc.has(r"\bwhere\b|\bгде\b"):
        return
    value = rf"(?:{AMOUNT}|'[^']*'|\"[^\"]*\"|[A-Za-z_][\w\-]*)"
    ops, col = _op_regex(_OPS_EN + _OPS_RU), _WHERE_COL
    cond = (rf"{col}\s+(?:is|are)\s+(?:not\s+)?(?:{_NULL_WORDS}|{_PRESENT_WORDS})(?![\w-])|"
            rf"{col}\s*(?:(?:is|are)\s+)?(?:{ops})\s*{value}|{col}\s+in\s+\([^)]*\)|"
            rf"{col}\s+(?:contains|includes|содержит)\s+{value}|{col}\s+(?:is|are|equals)\s+(?:not\s+)?{value}")
    for where, conj in (("where", r"and"), ("где", r"и")):
        for m in list(sc.finditer(rf"\b{where}\s+(?:the\s+)?(?P<conds>(?:{cond})(?:\s+{conj}\s+(?:the\s+)?(?:{cond}))+)")):
            parsed = [_where_condition(p) for p in re.split(rf"\s+{conj}\s+(?:the\s+)?", m.group("conds"), flags=re.I)]
            if all(parsed):
                for col, op, val in parsed:  # type: ignore[misc]
                    add_filter(sc, d, m, col, op, val)


_WHERE_COL = rf"(?:{IDENT}|{'|'.join(sorted(_RU_COLUMNS, key=len, reverse=True))})"


def _where_condition(text: str) -> Optional[tuple[str, str, Any]]:
    t = text.strip()
    word = re.match(rf"{_WHERE_COL}", t, re.I)
    if word and word.group(0).lower() in _RU_COLUMNS:  # «где сумма больше 1000»
        t = _RU_COLUMNS[word.group(0).lower()] + t[word.end():]
    m = re.fullmatch(rf"({IDENT})\s+(?:is|are)\s+(not\s+)?(.+)", t, re.I)
    if m and re.fullmatch(_NULL_WORDS, m.group(3), re.I):
        return m.group(1), "not_null" if m.group(2) else "is_null", None
    if m and re.fullmatch(_PRESENT_WORDS, (m.group(2) or "") + m.group(3), re.I):
        return m.group(1), "not_null", None
    m2 = re.fullmatch(rf"({IDENT})\s*(?:(?:is|are)\s+)?({_op_regex(_OPS_EN + _OPS_RU)})\s*(.+)", t, re.I)
    if m2:
        value, _ = amount_value(m2.group(3))
        return m2.group(1), _OPS[" ".join(m2.group(2).lower().split())], value if value is not None else literal(m2.group(3))
    if m:
        return m.group(1), "!=" if m.group(2) else "=", literal(m.group(3).strip())
    m4 = re.fullmatch(rf"({IDENT})\s+(?:contains|includes|содержит)\s+(.+)", t, re.I)
    if m4:
        return m4.group(1), "contains", str(literal(m4.group(2).strip()))
    m3 = re.fullmatch(rf"({IDENT})\s+in\s+\(([^)]*)\)", t, re.I)
    if m3:
        items = [literal(v.strip()) for v in m3.group(2).split(",") if v.strip()]
        return (m3.group(1), "in", items) if items else None
    return None


def scan_contains(sc: Scanner, d: Draft) -> None:
    """"where email contains 'gmail'", "whose name includes Ltd", «где email содержит gmail» -> contains."""
    if not sc.has(r"contain|includ|содерж"):
        return
    value = r"(?P<val>'[^']+'|\"[^\"]+\"|[\w@.\-]*\w)"
    pattern = (rf"\b(?:where|whose|with|где|у\s+которых)?\s*(?:the\s+)?{column('col', True)}\s+(?:contains|containing|"
               rf"includes|including|содержит|содержащ\w*)\s+(?:the\s+(?:text|word)\s+)?{value}")
    for m in list(sc.finditer(pattern)):
        add_filter(sc, d, m, _col(m), "contains", str(literal(m.group("val"))))


# --- comparisons with units and number words ---------------------------------------------------------

_OPS_EN = (("greater than or equal to", ">="), ("more than or equal to", ">="), ("less than or equal to", "<="),
           ("greater than", ">"), ("more than", ">"), ("higher than", ">"), ("larger than", ">"),
           ("bigger than", ">"), ("above", ">"), ("over", ">"), ("exceeding", ">"), ("in excess of", ">"),
           ("of at least", ">="), ("at least", ">="), ("no less than", ">="), ("not less than", ">="),
           ("minimum", ">="), ("less than", "<"), ("lower than", "<"), ("smaller than", "<"),
           ("cheaper than", "<"), ("below", "<"), ("under", "<"), ("of at most", "<="), ("at most", "<="),
           ("no more than", "<="), ("not more than", "<="), ("up to", "<="), ("maximum", "<="),
           ("exactly", "="), ("equal to", "="), ("equals", "="), (">=", ">="), ("<=", "<="), (">", ">"),
           ("<", "<"), ("=", "="))
_OPS_RU = (("не менее", ">="), ("не меньше", ">="), ("не более", "<="), ("не больше", "<="),
           ("больше", ">"), ("более", ">"), ("свыше", ">"), ("выше", ">"), ("дороже", ">"), ("от", ">="),
           ("меньше", "<"), ("менее", "<"), ("ниже", "<"), ("дешевле", "<"), ("до", "<="))
_OPS = dict(_OPS_EN + _OPS_RU)


def _op_regex(ops: tuple) -> str:
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w, _ in ops)


def scan_comparisons(sc: Scanner, d: Draft) -> None:
    _scan_measured(sc, d)
    if not sc.has(rf"between|from|{_op_regex(_OPS_EN + _OPS_RU)}"):
        return
    c = column("col")
    val = rf"(?P<val>{AMOUNT})(?P<pct>{PERCENT_AFTER})?"
    low_high = rf"(?P<low>{AMOUNT})\s+(?:and|to|-|и)\s+(?P<high>{AMOUNT})"
    patterns = (
        (rf"\b(?:with|where|whose|having)\s+(?:an?\s+|the\s+)?{c}\s+(?:is\s+|of\s+)?(?:between|from)\s+{low_high}", True),
        (rf"\b(?:with|where|whose|having)\s+(?:an?\s+|the\s+)?{c}\s+(?:is\s+|of\s+)?(?P<op>{_op_regex(_OPS_EN)})\s*{val}",
         True),
        (rf"\b(?:and|but)\s+(?:the\s+)?{c}\s+(?:is\s+)?(?P<op>{_op_regex(_OPS_EN)})\s*{val}", True),
        (rf"\b(?:and|but)\s+(?:is\s+)?(?P<op>{_op_regex(_OPS_EN)})\s*{val}", "previous"),
        (rf"\b(?P<what>{IDENT}|\w+)\s+(?:that\s+(?:are|cost|costs|is)\s+|which\s+(?:are|cost)\s+|costing\s+|worth\s+|"
         rf"of\s+|with\s+(?:a\s+)?(?:total|value|price|amount)\s+(?:of\s+)?)?(?P<op>{_op_regex(_OPS_EN)})\s*{val}",
         False),
        (rf"\b(?:с\s+)?(?:(?:на\s+)?сумм(?:ой|у|а)|ценой|цена|amount|price)\s+(?P<op>{_op_regex(_OPS_RU)})\s+{val}", False),
        (rf"\b(?P<what>\w+)\s+(?P<op>{_op_regex(_OPS_RU)})\s+{val}", False),
    )
    for pattern, named in patterns:
        for m in list(sc.finditer(pattern)):
            _comparison(sc, d, m, named)


# Units said after a number; the column that stores the quantity in that unit carries it in its name.
_UNITS = {"mg": "mg", "мг": "mg", "mcg": "mcg", "мкг": "mcg", "g": "g", "г": "g", "kg": "kg", "кг": "kg",
          "ml": "ml", "мл": "ml", "l": "l", "л": "l", "cm": "cm", "см": "cm", "mm": "mm", "мм": "mm",
          "km": "km", "км": "km", "kcal": "kcal", "ккал": "kcal"}
_UNIT = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))


def _scan_measured(sc: Scanner, d: Draft) -> None:
    """"with a dose of 850 mg", "having a weight of 2 kg", «с дозой 850 мг»: the column equals the amount.
    A unit is part of the column's name (dose_mg): "850 mg" compares dose_mg, so a column kept in grams
    is not compared with milligrams - the catalog has no dose_mg there and the compiler asks."""
    if not sc.has(r"\bof\b|\bс\b|\bсо\b"):
        return
    val = rf"(?P<val>{AMOUNT})(?:\s*(?P<unit>{_UNIT})(?![\w]))?"
    ru_nouns = "|".join(sorted(MEASURE_NOUNS_RU, key=len, reverse=True))
    patterns = (rf"\b(?:with|having)\s+(?:an?\s+|the\s+)?{column('col')}\s+of\s+(?:exactly\s+)?{val}(?![\w.])",
                rf"\b(?:с|со)\s+(?P<ru>(?:{ru_nouns})[а-яё]*)\s+(?:ровно\s+)?{val}(?![\w.])")
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            value, _ = amount_value(m.group("val"))
            if value is None:
                continue
            if m.groupdict().get("ru"):
                col = next(c for stem, c in sorted(MEASURE_NOUNS_RU.items(), key=lambda x: -len(x[0]))
                           if m.group("ru").lower().startswith(stem))
            else:
                col = column_name(m.group("col"))
            unit = _UNITS.get((m.group("unit") or "").lower())
            if unit and not col.lower().endswith("_" + unit):
                col = f"{col}_{unit}"
            add_filter(sc, d, m, col, "=", value)


def _comparison(sc: Scanner, d: Draft, m: re.Match, named: bool) -> None:
    g = m.groupdict()
    if g.get("low"):
        low, high = amount_value(g["low"])[0], amount_value(g["high"])[0]
        if low is not None and high is not None:
            add_filter(sc, d, m, column_name(g["col"]), "between", [low, high])
        return
    value, currency = amount_value(g["val"])
    if named == "previous":  # "amount above 100 and below 500": the column just compared
        col = next((f["column"] for f in reversed(d.filters) if f["op"] in _OPS.values()), None)
    else:
        col = column_name(g["col"]) if named else _compared_column(d, m, currency)
    if value is None or col is None:
        return
    if g.get("pct"):
        d.ask("filters", f"'{m.group(0)}': is the percentage stored as {value} or as {value / 100:g} in {col}?",
              f"'{m.group(0)}': процент хранится в {col} как {value} или как {value / 100:g}?")
        sc.take(m)
        return
    if named is False and (g.get("what") or "").lower() in ENTITY_NOUNS:
        m = Span(m.end("what"), m.end())  # "paid orders over $50": "orders" stays for the status rule
    add_filter(sc, d, m, col, _OPS[" ".join(g["op"].lower().split())], value)


def _compared_column(d: Draft, m: re.Match, currency: bool) -> Optional[str]:
    """Which column "<word> over <value>" compares: the word when it is a column, a money column when the
    value is money ("orders over $100", «на сумму больше 1000»), else None (nothing says which)."""
    what = (m.groupdict().get("what") or "").lower()
    price = re.search(r"цен|price|cost|дороже|дешевле|cheaper", m.group(0), re.I)
    if currency or re.search(r"сумм|цен", m.group(0), re.I):
        return "price" if price else "amount"
    if what in MONEY_NOUNS:
        col = "price" if price else "amount"
        d.default(f"'{m.group(0)}' compares {col}")
        return col
    if re.fullmatch(IDENT, what) and what not in STOPWORDS_EN and what not in ENTITY_NOUNS and what not in VERBS \
            and not re.match(NOT_A_COLUMN + r"\w", what):
        return column_name(what)
    return None


# --- durations, counted things and ids said in prose -------------------------------------------------

_LONGER = (("longer than", ">"), ("more than", ">"), ("over", ">"), ("at least", ">="), ("no less than", ">="),
           ("shorter than", "<"), ("less than", "<"), ("under", "<"), ("at most", "<="), ("no more than", "<="),
           ("exactly", "="), ("дольше", ">"), ("больше", ">"), ("более", ">"), ("свыше", ">"), ("не менее", ">="),
           ("не меньше", ">="), ("короче", "<"), ("меньше", "<"), ("менее", "<"), ("не более", "<="),
           ("не больше", "<="))
_OR_MORE = {"longer": ">=", "more": ">=", "greater": ">=", "over": ">=", "shorter": "<=", "less": "<=", "fewer": "<="}
_DURATION_UNIT = (r"(?P<unit>minutes?|mins?|hours?|hrs?|h|days?|weeks?|минут\w*|мин|час\w*|дн\w+|день|сут\w*|"
                  r"недел\w+)")
_HALF = r"(?P<half>half\s+an\s+hour|an\s+hour|a\s+day|a\s+week|получаса|полчаса|часа|суток|недели)"


def scan_durations(sc: Scanner, d: Draft) -> None:
    """"visits that lasted more than 45 minutes", "30 min or longer", "longer than half an hour", «дольше
    получаса»: a duration compared. The column word is "duration" (linked from the catalog, e.g. duration_min)
    after a verb of lasting, else the unit ("for 30 days or longer" -> days). Hours count as minutes."""
    if not sc.has(r"last|long|short|took|take|дольше|короче|длил|продолж|\bor\s+(?:more|less)"):
        return
    ops = _op_regex(_LONGER)
    amount = rf"(?:(?P<n>{NUMBER_ANY})\s*-?\s*{_DURATION_UNIT}|{_HALF})(?![\w-])"
    verb = r"(?P<verb>lasted|lasting|lasts|last|took|taking|takes|long|длил\w*|продолжал\w*|длительностью|продолжительностью)"
    patterns = (rf"\b(?:that\s+|which\s+)?{verb}\s+(?:for\s+)?(?P<op>{ops})\s+{amount}",
                rf"\b(?:that\s+|which\s+)?(?:{verb}\s+)?(?:for\s+)?(?P<op>longer\s+than|shorter\s+than|дольше|короче)\s+{amount}",
                rf"\b(?:that\s+|which\s+)?(?:{verb}\s+)?(?:for\s+)?{amount}\s+or\s+(?P<more>longer|more|greater|over|shorter|less|fewer)")
    for pattern in patterns:
        for m in list(sc.finditer(unique_groups(pattern))):
            g = m.groupdict()
            value, unit = _duration(g)
            if value is None:
                continue
            op = _OR_MORE[g["more"].lower()] if g.get("more") else dict(_LONGER)[" ".join(g["op"].lower().split())]
            longer = g.get("verb") or re.match(r"longer|shorter|дольше|короче", g.get("op") or "", re.I)
            add_filter(sc, d, m, "duration" if longer or unit == "minute" else f"{unit}s", op, value)


def _duration(g: dict) -> tuple[Optional[float], Optional[str]]:
    half = (g.get("half") or "").lower()
    if half:
        return {"half an hour": (30, "minute"), "получаса": (30, "minute"), "полчаса": (30, "minute"),
                "an hour": (60, "minute"), "часа": (60, "minute"), "a day": (1, "day"), "суток": (1, "day"),
                "a week": (7, "day"), "недели": (7, "day")}.get(" ".join(half.split()), (None, None))
    n = number_value(g.get("n") or "")
    unit = (g.get("unit") or "").lower()
    if n is None:
        return None, None
    if unit.startswith(("h", "час")):
        return n * 60, "minute"
    if unit.startswith(("w", "недел")):
        return n * 7, "day"
    if unit.startswith(("d", "дн", "ден", "сут")):
        return n, "day"
    return n, "minute"


def scan_counted(sc: Scanner, d: Draft) -> None:
    """"with at least 7 refills", "with more than 2 refills", «с тремя продлениями (refills)», «больше трёх
    продлений (refills)»: the counted noun (or the column in the parenthesis) compared with the number;
    "the appointments of doctor 7", "orders of customer 42 (customer_id)": an id."""
    ops = _op_regex(_OPS_EN)
    ops_ru = _op_regex(_OPS_RU)
    paren = rf"(?:\s*\(\s*(?P<col>{IDENT})\s*\))"
    patterns = (
        (rf"\bwith\s+(?:(?P<op>{ops})\s+)?(?P<n>{NUMBER_ANY})\s+(?P<noun>[a-z]+s){paren}?(?=[\s,.;)]|$)", "en"),
        (rf"\b(?:с|со)\s+(?P<n>{NUMBER_ANY})\s+(?P<noun>[а-яё]+){paren}", "ru"),
        (rf"\b(?P<op>{ops_ru})\s+(?P<n>{NUMBER_ANY})\s+(?P<noun>[а-яё]+){paren}", "ru"),
    )
    for pattern, lang in patterns:
        for m in list(sc.finditer(pattern)):
            n = number_value(m.group("n"))
            noun = m.group("noun").lower()
            if not isinstance(n, int) or lang == "en" and not m.group("col") and (
                    noun in ENTITY_NOUNS and noun not in ("items", "lines") or noun in _UNIT_WORDS):
                continue  # "with 2 orders", "with 5 minutes": not a column of the row
            col = m.group("col") or (column_name(noun) if lang == "en" else None)
            if col is None:
                continue
            op = _OPS[" ".join(m.group("op").lower().split())] if m.groupdict().get("op") else "="
            add_filter(sc, d, m, col, op, n)
    not_an_entity = (r"(?!(?:last|past|first|top|next|previous|every|each|the|a|an|at|least|most|more|less|than|over|under|"
                     r"version|page|step|batch|day|week|month|year|hour|minute|second|row|rows|q|quarter|limit|size|"
                     r"about|around|up|to|from)\b)")
    for m in list(sc.finditer(rf"\b(?:of|for|by|from)\s+(?:the\s+)?{not_an_entity}(?P<ent>[a-z]{{3,}})\s+(?:#\s*|no\.?\s*|"
                              rf"number\s+|id\s+)?(?P<n>\d+)(?![\w.:,-]|\s*(?:%|(?:seconds?|minutes?|mins?|hours?|days?|weeks?|months?|"
                              rf"years?|percent|rows?|records?|times)\b))(?:{paren})?")):
        col = m.group("col") or f"{m.group('ent').lower()}_id"
        add_filter(sc, d, Span(m.start("ent"), m.end()), col, "=", int(m.group("n")))


_UNIT_WORDS = frozenset("seconds minutes mins hours hrs days weeks months years percent dollars euros rubles".split())


# --- status lists ------------------------------------------------------------------------------------

def scan_status_lists(sc: Scanner, d: Draft) -> None:
    if not sc.has("status|" + "|".join(STATUS_WORDS) + "|" + "|".join(STATUS_WORDS_RU)):
        return
    st = "|".join(STATUS_WORDS)
    nouns = r"(?=\s+(?:orders?|payments?|transactions?|invoices?|rows|records|ones|items|sales|shipments?)\b)"
    lists = rf"(?P<list>(?:{st})(?:\s*(?:,|and|or|/)\s*(?:{st}))+)"
    for m in list(sc.finditer(rf"\b(?:only\s+)?(?:either\s+)?{lists}{nouns}")):
        _status_in(sc, d, m, "in", [STATUS_WORDS[w.lower()] for w in re.findall(st, m.group("list"), re.I)])
    vals = r"(?P<list>[\w'\"-]+(?:\s*(?:,|or|and)\s*(?:either\s+)?[\w'\"-]+)+)"
    for m in list(sc.finditer(rf"\b(?:with|having|in)\s+(?:a\s+|the\s+)?status\s+(?:of\s+|in\s+)?(?:either\s+)?{vals}"
                              rf"(?=\s*$|\s*[,.;]|\s+(?:from|into|to|in|on)\b)")):
        items = [str(literal(v)) for v in re.split(r"\s*(?:,|\bor\b|\band\b|\beither\b)\s*", m.group("list")) if v]
        _status_in(sc, d, m, "in", items)
    for m in list(sc.finditer(rf"\b(?:(?:with|having|whose|where)\s+(?:a\s+|the\s+)?)?status\s+(?:is\s+)?(?:not|other\s+than|!=|<>)\s+"
                              rf"(?P<list>'[^']*'|\"[^\"]*\"|\w+)")):
        _status_in(sc, d, m, "not_in", [str(literal(m.group("list")))])
    neg = (r"(?:(?:that|which|who)\s+(?:are|is|were|was)\s+)?"  # "orders that are not paid"
           r"(?:excluding|exclude|except(?:\s+for)?|without|but\s+not|other\s+than|not|non-?|ignoring|skipping)")
    one_or_more = rf"(?P<list>(?:{st})(?:\s*(?:,|and|or|/)\s*(?:{st}))*)"
    for m in list(sc.finditer(rf"\b{neg}\s*(?:the\s+|any\s+)?{one_or_more}(?:\s+(?:ones|orders?|payments?|rows|"
                              rf"records|transactions?|items))?\b")):
        _status_in(sc, d, m, "not_in", [STATUS_WORDS[w.lower()] for w in re.findall(st, m.group("list"), re.I)])
    stems = "|".join(STATUS_WORDS_RU)
    for m in list(sc.finditer(rf"\b(?:кроме|исключая|без|не)\s+(?P<st>{stems})\w*(?:\s+(?:заказ\w*|платеж\w*|платёж\w*))?")):
        _status_in(sc, d, m, "not_in", [STATUS_WORDS_RU[m.group("st").lower()]])
    for m in list(sc.finditer(rf"\b(?:только\s+)?(?P<st>{stems})\w*\s+(?:и|или)\s+(?P<st2>{stems})\w*")):
        _status_in(sc, d, m, "in", [STATUS_WORDS_RU[m.group("st").lower()], STATUS_WORDS_RU[m.group("st2").lower()]])


def _status_in(sc: Scanner, d: Draft, m: re.Match, op: str, values: list[Any]) -> None:
    values = list(dict.fromkeys(values))
    if len(values) == 1:
        add_filter(sc, d, m, "status", "=" if op == "in" else "!=", values[0])
    else:
        add_filter(sc, d, m, "status", op, values)
