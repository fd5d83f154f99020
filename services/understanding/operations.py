"""What happens to the rows: filters, aggregates, cleaning, PII handling and explicit quality checks."""
from __future__ import annotations

import re
from typing import Any, Optional

from .draft import Draft
from .lexicon import (COLUMN_WORDS, DEFAULT_TIME_COLUMN, ENTITY_NOUNS, GROUP_WORDS_RU, IDENT, MEASURE_NOUNS_RU,
                      MONEY_WORDS, NOT_A_COLUMN, NUMBER, PERIODS, STATUS_WORDS, STATUS_WORDS_RU, VALUE, column)
from .scanner import Hit, Scanner, Span

_OPS = (("greater than", ">"), ("more than", ">"), ("higher than", ">"), ("larger than", ">"),
        ("above", ">"), ("over", ">"), ("exceeding", ">"), ("of at least", ">="), ("at least", ">="),
        ("no less than", ">="), ("less than", "<"), ("lower than", "<"), ("smaller than", "<"),
        ("below", "<"), ("under", "<"), ("of at most", "<="), ("at most", "<="), ("no more than", "<="),
        ("equal to", "="), ("equals", "="), ("==", "="), (">=", ">="), ("<=", "<="), ("!=", "!="),
        ("<>", "!="), (">", ">"), ("<", "<"), ("=", "="))
_OP_WORDS = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w, _ in _OPS)
_SIGNS = {"positive": (">", 0), "non-negative": (">=", 0), "nonnegative": (">=", 0), "negative": ("<", 0),
          "non-zero": ("!=", 0), "nonzero": ("!=", 0), "положительн": (">", 0), "неотрицательн": (">=", 0),
          "отрицательн": ("<", 0), "ненулев": ("!=", 0)}


def column_name(word: str) -> str:
    """The column a user's word stands for: "emails" -> email, "revenue" -> amount, else the word."""
    key = " ".join(word.lower().split())
    return COLUMN_WORDS.get(key, word if re.fullmatch(IDENT, word) else re.sub(r"\W+", "_", key))


def singular(word: str) -> str:
    """"categories" -> category, "statuses" -> status, "customers" -> customer (English plurals)."""
    w = word.lower()
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "uses", "xes", "ches", "shes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def literal(token: str) -> Any:
    """A value from the request: quoted text, a number, true/false, or a bare word taken as text."""
    if token[:1] in "'\"" and token[-1:] == token[:1] and len(token) >= 2:
        return token[1:-1]
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if re.fullmatch(r"-?\d+\.\d+", token):
        return float(token)
    if token.lower() in ("true", "false"):
        return token.lower() == "true"
    return token


def _op(word: str) -> str:
    norm = " ".join(word.lower().split())
    return next(op for w, op in _OPS if w == norm)


def add_filter(sc: Scanner, d: Draft, m: "re.Match | Span", col: str, op: str, value: Any = None) -> None:
    f = {"column": col, "op": op, "value": value}
    if f not in d.filters:
        d.filters.append(f)
    shown = "" if value is None else (f" '{value}'" if isinstance(value, str) else f" {value}")
    sc.take(m, f"filter {col} {op}{shown}")


# --- filters ---------------------------------------------------------------------------------------

# What a status adjective may describe ("completed visits", "failed payments"): any plural entity noun.
_PLURALS = "|".join(sorted((w for w in ENTITY_NOUNS if re.fullmatch(r"[a-z]+s", w)), key=len, reverse=True))

def scan_filters(sc: Scanner, d: Draft) -> None:
    nouns = rf"(?=\s+(?:orders?|payments?|transactions?|invoices?|rows|records|ones|items|sales|{_PLURALS})\b)"
    status = "|".join(STATUS_WORDS)
    for m in list(sc.finditer(rf"\b(?:only\s+)?(?P<st>{status}){nouns}")):
        add_filter(sc, d, m, "status", "=", STATUS_WORDS[m.group("st").lower()])
    _scan_where(sc, d, r"(?:with|having|whose)(?=\s+\w+\s+(?:in|among|one\s+of)\s*\()", r"and")
    for m in list(sc.finditer(rf"\b(?:with|having|in)\s+(?:the\s+|a\s+)?status\s+(?:=\s*|of\s+|is\s+)?(?!in\s*\()"
                              rf"(?P<val>{VALUE})")):
        add_filter(sc, d, m, "status", "=", literal(m.group("val")))
    signs = "positive|non-negative|nonnegative|negative|non-zero|nonzero"
    for m in list(sc.finditer(rf"\bwith\s+(?:an?\s+|the\s+)?(?P<sign>{signs})\s+{column('col')}")):
        add_filter(sc, d, m, column_name(m.group("col")), *_SIGNS[m.group("sign").lower()])
    _scan_where(sc, d, r"where", r"and")
    # "only the rows flagged H", "results marked as urgent": the participle's noun is the column
    for m in list(sc.finditer(rf"\b(?P<verb>flagged|labell?ed|tagged|marked|typed)\s+(?:as\s+)?(?P<val>'[^']*'|\"[^\"]*\"|[A-Z][\w-]*)"
                              rf"(?![\w.])")):
        col = {"flagged": "flag", "labeled": "label", "labelled": "label", "tagged": "tag", "marked": "mark",
               "typed": "type"}[m.group("verb").lower()]
        add_filter(sc, d, m, col, "=", literal(m.group("val")))
    # the same once the catalog named the column ("the rows flag H"): a code in capitals or quotes after it
    for m in list(sc.finditer(rf"\b(?:rows|records|ones|results|entries)\s+(?P<col>{NOT_A_COLUMN}{IDENT})\s+"
                              rf"(?P<val>'[^']*'|\"[^\"]*\"|[A-Z][A-Z0-9_-]*)(?![\w.])")):
        add_filter(sc, d, Span(m.start("col"), m.end()), m.group("col"), "=", literal(m.group("val")))
    for m in list(sc.finditer(rf"\bwith\s+(?:an?\s+|the\s+)?{column('col')}\s+(?P<op>{_OP_WORDS})\s*"
                              rf"(?P<val>{VALUE})")):
        add_filter(sc, d, m, column_name(m.group("col")), _op(m.group("op")), literal(m.group("val")))
    _scan_filters_ru(sc, d)


def _scan_filters_ru(sc: Scanner, d: Draft) -> None:
    stems = "|".join(STATUS_WORDS_RU)
    rows = r"заказ|платеж|платёж|строк|запис|при[её]м|визит|анализ|назначени|клиент|пациент|врач|товар|продаж|доставк"
    for m in list(sc.finditer(rf"\b(?:(?:для|среди)\s+)?(?:только\s+)?(?P<st>{stems})\w*(?=\s+(?:{rows}))|"
                              rf"\bтолько\s+(?P<st2>{stems})\w*")):
        stem = (m.group("st") or m.group("st2")).lower()
        add_filter(sc, d, m, "status", "=", STATUS_WORDS_RU[stem])
    sign_stems = "положительн|неотрицательн|отрицательн|ненулев"
    for m in list(sc.finditer(rf"\bс\s+(?P<sign>{sign_stems})\w*\s+(?P<col>сумм\w*|выручк\w*|{IDENT})")):
        col = "amount" if re.match(r"сумм|выручк", m.group("col"), re.I) else m.group("col")
        add_filter(sc, d, m, col, *_SIGNS[m.group("sign").lower()])
    _scan_where(sc, d, r"где", r"и")
    # «пациентов, у которых город Kazan», «у которых status = paid»: a column and its value
    ru_cols = "|".join(w for w in COLUMN_WORDS if re.search(r"[а-яё]", w) and not w.endswith(("ам", "ям")))
    for m in list(sc.finditer(rf"\bу\s+которых\s+(?:(?P<ru>{ru_cols})|(?P<col>{IDENT}))\s+(?:=\s*|равен\s+|равна\s+|это\s+)?"
                              rf"(?!не\b|нет\b|пуст|указан|заполн)(?P<val>'[^']*'|\"[^\"]*\"|[\w-]+)(?![\w.])")):
        col = COLUMN_WORDS.get((m.group("ru") or "").lower()) or m.group("col")
        add_filter(sc, d, m, col, "=", literal(m.group("val")))


# "where test_code is GLU", "where lab is not 'Helix'": a bare value after "is" (not an operator or null word).
_IS_VALUE = (rf"{IDENT}\s+(?:is|equals)\s+(?:not\s+)?(?!(?:greater|less|more|higher|lower|larger|smaller|above|below|over|"
             rf"under|between|at|in|null|empty|missing|blank|set|known|present|not|the|a|an)\b)(?:{VALUE})(?![\w.-])")


def _scan_where(sc: Scanner, d: Draft, where: str, conj: str) -> None:
    cond = (rf"{IDENT}\s*(?:=|==|!=|<>|>=|<=|>|<)\s*(?:{VALUE})|{IDENT}\s+is\s+(?:not\s+)?(?:null|empty)|"
            rf"{IDENT}\s+(?:in|among|one\s+of)\s*\([^)]*\)|{_IS_VALUE}")
    for m in list(sc.finditer(rf"\b{where}\s+(?P<conds>(?:{cond})(?:\s+{conj}\s+(?:{cond}))*)")):
        parts = re.split(rf"\s+{conj}\s+", m.group("conds"), flags=re.I)
        parsed = [_condition(p) for p in parts]
        if any(p is None for p in parsed):
            continue
        for col, op, value in parsed:  # type: ignore[misc]
            add_filter(sc, d, m, col, op, value)


def _condition(text: str) -> Optional[tuple[str, str, Any]]:
    m = re.fullmatch(rf"({IDENT})\s*(==|!=|<>|>=|<=|=|>|<)\s*(.+)", text.strip())
    if m:
        return m.group(1), _op(m.group(2)), literal(m.group(3).strip())
    m = re.fullmatch(rf"({IDENT})\s+is\s+(not\s+)?(null|empty)", text.strip(), re.I)
    if m:
        return m.group(1), "not_null" if m.group(2) else "is_null", None
    m = re.fullmatch(rf"({IDENT})\s+(?:in|among|one\s+of)\s*\(([^)]*)\)", text.strip(), re.I)
    if m:
        items = [literal(v.strip()) for v in re.split(r"\s*(?:,|\bor\b)\s*", m.group(2)) if v.strip()]
        return (m.group(1), "in", items) if items else None
    m = re.fullmatch(rf"({IDENT})\s+(?:is|equals)\s+(not\s+)?({VALUE})", text.strip(), re.I)
    if m:
        return m.group(1), "!=" if m.group(2) else "=", literal(m.group(3))
    return None


# --- aggregates ------------------------------------------------------------------------------------

# "as X" / "called X" after a measure names its output column.
_ALIAS = rf"(?:\s+(?:as|called|named|aliased\s+as|как)\s+(?!a\b|an\b|the\b){IDENT})?"
# "average visit duration", "total order amount": a singular entity noun before the measured column.
_ONE = "|".join(sorted((w for w in ENTITY_NOUNS if re.fullmatch(r"[a-z]+", w) and not w.endswith("s")), key=len, reverse=True))
# Never before a preposition: "total fee from PG ..." sums fee, not a column "from".
_OF_ONE = rf"(?:(?:{_ONE})\s+(?!(?:per|by|of|from|into|to|in|for|where|with|and|or|on|at|as|over|since|each|every)\b))?"
_RU_NOUN = rf"(?:{'|'.join(MEASURE_NOUNS_RU)})\w*"
# ... and the genitive noun of what it is measured on («стоимость приёма», «длительность сессий»)
_RU_OF = r"(?:\s+(?!(?:по|за|для|из|в|во|с|со|на|от|до|как|и)\b)[а-яё]+(?:ов|ей|ий|ев|ёв|а|я|и|ы|ок))?"
_MEASURE_EN = (rf"(?:(?:(?:total|overall|gross)\s+)?(?:revenue|sales|turnover)|average\s+order\s+value|aov|"
               rf"average\s+(?:check|basket)|(?:total|sum\s+of|summing(?:\s+up)?|sum|summed)\s+"
               rf"(?:the\s+)?{_OF_ONE}{IDENT}|(?:average|avg|mean|averaging)\s+(?:of\s+)?(?:the\s+)?{_OF_ONE}{IDENT}|"
               rf"(?:count\s+of|number\s+of|counting|count|how\s+many)\s+(?:the\s+|all\s+)?(?:(?:distinct|unique|"
               rf"different)\s+)?(?!of\b|per\b|by\b)\w+(?:-\w+)*|"
               rf"(?:order|row|event|click|record|visit|session|payment|transaction)s?\s+counts?|counts?|"
               rf"(?!(?:the|a|an|and|of|per|by)\b){IDENT}\s+(?:totals?|sums?)\b|"
               rf"(?:min(?:imum)?|max(?:imum)?|lowest|highest|smallest|largest)\s+(?:of\s+)?(?:the\s+)?{IDENT})"
               rf"{_ALIAS}")
_MEASURE_RU = (rf"(?:(?:общ\w+\s+)?(?:выручк\w*|продаж\w*)|средн\w+\s+чек\w*|(?:сумм\w*|суммируя|итог\w*)\s+"
               rf"(?:по\s+полю\s+)?{IDENT}|(?:средн\w+)\s+{IDENT}|(?:количество|число)\s+(?:уникальн\w+\s+|различн\w+\s+)?\w+|"
               rf"сколько\s+\w+|(?:(?:средн\w+|суммарн\w+|сумм[аыу]|общ\w+|минимальн\w+|максимальн\w+)\s+)?{_RU_NOUN}{_RU_OF}|"
               rf"(?:минимальн\w+|максимальн\w+)\s+{IDENT}){_ALIAS}")
# "per customer city", "per doctor specialty": an entity noun and one of its columns (customer_city, which
# grounding links to the city of a joined customers table or asks about).
_GROUP_WORD = (rf"(?:calendar\s+day|(?:{_ONE})\s+(?!\w+ing\b|(?:for|while|when|if|that|which|who|so|but|than|is|are|was|were)\b){NOT_A_COLUMN}[a-z]+\b(?!\s+(?:it|them|this|that)\b)|"
               rf"(?!\w+ing\b){NOT_A_COLUMN}{IDENT}\b(?!\s+(?:it|them|this|that)\b))")  # "name it"
_GROUPS_EN = rf"{_GROUP_WORD}(?:(?:\s*,\s*|\s+(?:and|per|by|for\s+each)\s+){_GROUP_WORD})*"
# Russian dative plurals of grouping words ("по врачам"); the ones in COLUMN_WORDS have an English column.
_GROUP_WORD_RU = (rf"(?:(?:[а-яё]+\s+){{0,2}}\(\s*{IDENT}\s*\)|дням|неделям|месяцам|часам|дню|месяцу|неделе|часу|"
                  rf"{'|'.join(sorted(GROUP_WORDS_RU, key=len, reverse=True))}|"
                  rf"{'|'.join(sorted((w for w in COLUMN_WORDS if w.endswith(('ам', 'ям'))), key=len, reverse=True))}|"
                  rf"{IDENT})")
_GROUPS_RU = rf"{_GROUP_WORD_RU}(?:(?:\s*,\s*|\s+и\s+){_GROUP_WORD_RU})*"
_ADJ_EN = r"(?P<adj>daily|weekly|monthly|hourly)"
_ADJ_RU = r"(?P<adj>ежедневн|еженедельн|ежемесячн|ежечасн)\w*"


def scan_aggregates(sc: Scanner, d: Draft) -> None:
    measures = rf"(?P<measures>{_MEASURE_EN}(?:(?:\s*,\s*|\s+and\s+){_MEASURE_EN})*)"
    per = r"(?:per|by|for\s+each|for\s+every|grouped\s+by)"
    time_col = (rf"(?:\s+of\s+(?P<timecol>{IDENT})(?![.\w])(?:(?:\s*,\s*|\s+and\s+|\s+per\s+)"
                rf"(?P<more>{_GROUPS_EN}))?)?")  # "per day of ts and page"
    each = r"(?:\s+(?:each|every|a|per|by)\s+(?P<period2>day|week|month|hour))?"  # "per category each month"
    patterns = (rf"\b{_ADJ_EN}\s+{measures}(?:\s+{per}\s+(?P<groups>{_GROUPS_EN}))?{time_col}",
                rf"\b{measures}\s+{per}\s+(?P<groups>{_GROUPS_EN}){time_col}{each}",
                rf"\b(?:(?P<pcol>{NOT_A_COLUMN}{IDENT})\s+)?(?P<passive>summed|totall?ed|aggregated|averaged|"
                rf"counted)\s+(?:up\s+)?{per}\s+(?P<groups>{_GROUPS_EN}){time_col}{each}")
    measures_ru = rf"(?P<measures>{_MEASURE_RU}(?:(?:\s*,\s*|\s+и\s+){_MEASURE_RU})*)"
    each_ru = r"(?:кажд\w+\s+)?"
    patterns_ru = (rf"\b{_ADJ_RU}\s+{measures_ru}(?:\s+по\s+{each_ru}(?P<groups>{_GROUPS_RU}))?",
                   rf"\b{measures_ru}\s+(?:по\s+{each_ru}|(?:для\s+)?кажд\w+\s+)(?P<groups>{_GROUPS_RU})")
    for pattern in patterns + patterns_ru:
        for m in list(sc.finditer(pattern)):
            _aggregate(sc, d, m)
    # "customers per country", "orders per day (count)": rows counted per group; the noun stays for the
    # rules that read what is moved and its status ("refunded orders per country").
    rows = "|".join(sorted((w for w in ENTITY_NOUNS if re.fullmatch(r"[a-z]+s", w)), key=len, reverse=True))
    for m in list(sc.finditer(rf"\b(?:{rows}|rows|records)\s+(?P<per>(?:per|for\s+each)\s+(?P<groups>{_GROUPS_EN})"
                              rf"(?:\s*\((?:counts?|number|how\s+many)\))?)")):
        if d.aggregate is None:
            _aggregate(sc, d, m, Span(m.start("per"), m.end("per")),
                       [{"fn": "count", "column": None, "alias": "row_count"}])
    if d.aggregate is not None:
        _scan_aggregate_words(sc, d)


def _scan_aggregate_words(sc: Scanner, d: Draft) -> None:
    """Words around an aggregate that add nothing to it ("Aggregate X:", «посчитай»), and a parenthesis
    saying which column a revenue sums ("monthly revenue (sum of fee)")."""
    for m in list(sc.finditer(r"\b(?:aggregate[sd]?|aggregating|compute|computing|calculate|calculating|count\s+up|"
                              r"посчитай\w*|посчитать|подсчитай\w*|подсчитать|вычисли\w*|рассчитай\w*|агрегиру\w*|"
                              r"сгруппируй\w*|сгруппировав)\b")):
        sc.take(m, "aggregate")
    measures = d.aggregate["measures"]
    paren = rf"\(\s*(?:sum\s+of|total(?:\s+of)?|summing|сумма|сумм\w+)\s+(?:the\s+)?(?P<col>{IDENT})\s*\)"
    for m in list(sc.finditer(paren)):
        sums = [x for x in measures if x["fn"] == "sum"]
        if len(sums) == 1:
            sums[0]["column"] = column_name(m.group("col"))
            sc.take(m, f"sum of {sums[0]['column']}")
    for m in list(sc.finditer(r"\(\s*(?:counts?|number|количество)\s*\)")):
        if any(x["fn"] == "count" for x in measures):
            sc.take(m, "count")


def _aggregate(sc: Scanner, d: Draft, m: re.Match, part: "Optional[Span]" = None,
               given: Optional[list] = None) -> None:
    g = m.groupdict()
    measures = given or (_passive_measure(sc, d, g["passive"], g.get("pcol")) if g.get("passive")
                         else [_measure(p) for p in re.split(r"\s*(?:,|\band\b|\bи\b)\s*", g["measures"]) if p])
    periods = [PERIODS[g["adj"].lower()]] if g.get("adj") else []
    if g.get("period2"):
        periods.append(PERIODS[g["period2"].lower()])
    dims: list[str] = []
    words = f"{g.get('groups') or ''}, {g.get('more') or ''}"
    for word in re.split(r"\s*(?:,|\band\b|\bper\b|\bby\b|\bfor\s+each\b|\bи\b)\s*", words):
        if word:
            named = re.search(rf"\(\s*({IDENT})\s*\)", word)  # «по каналу записи (channel)»
            word = named.group(1) if named else GROUP_WORDS_RU.get(word.lower(), word)
            key = " ".join(word.lower().split())
            (periods if key in PERIODS else dims).append(PERIODS.get(key) or column_name(word))
    if d.aggregate is not None and _restated(d.aggregate, periods, dims, measures):
        sc.take(part or m, "the same aggregate, restated")
        return
    if d.aggregate is not None or len(set(periods)) > 1 or any(x is None for x in measures):
        sc.take(m)
        _ask_measure(d)
        return
    d.aggregate = {"period": periods[0] if periods else None, "dimensions": dims,
                   "measures": [x for x in measures if x], "time_column": None}
    if periods:
        d.aggregate["time_column"] = g.get("timecol") or DEFAULT_TIME_COLUMN
        if not g.get("timecol"):
            d.default(f"per-{periods[0]} grouping uses {DEFAULT_TIME_COLUMN} (say 'per {periods[0]} of "
                      f"<column>' to choose another)")
    groups = ([f"{periods[0]}({d.aggregate['time_column']})"] if periods else []) + dims
    shown = ", ".join(f"{x['fn']}({x['column'] or '*'})" for x in d.aggregate["measures"])
    sc.take(part or m, f"aggregate {shown} per {', '.join(groups)}")
    _counted_rows(sc, d, m)


def _restated(agg: dict[str, Any], periods: list, dims: list[str], measures: list) -> bool:
    """"revenue per specialty: ... sum the fee per specialty": a headline and the instruction that spells it
    out, per the same groups. "revenue" names a sum whose column the instruction gives (it keeps the name);
    any other difference is a second aggregate, which is asked about."""
    if agg["period"] != (periods[0] if periods else None) or len(set(periods)) > 1 or \
            len(agg["dimensions"]) != len(dims) or not all(map(_same_group, agg["dimensions"], dims)):
        return False
    if len(measures) != 1 or len(agg["measures"]) != 1 or measures[0] is None:
        return False
    agg["dimensions"] = [min(a, b, key=len) for a, b in zip(agg["dimensions"], dims)]
    old, new = agg["measures"][0], measures[0]
    if (old["fn"], old["column"]) == (new["fn"], new["column"]):
        return True
    revenue = [x for x in (old, new) if x["alias"] == "revenue" and x["fn"] == "sum"]
    if len(revenue) == 1 and old["fn"] == new["fn"] == "sum":
        explicit = new if revenue[0] is old else old
        agg["measures"] = [{**explicit, "alias": "revenue"}]
        return True
    return False


def _same_group(a: str, b: str) -> bool:
    """"customer city" and "city": the same group, said once with the entity whose column it is."""
    short, long_ = sorted((a, b), key=len)
    ent, _, rest = long_.partition("_")
    return a == b or (rest == short and ent in ENTITY_NOUNS)


def _counted_rows(sc: Scanner, d: Draft, m: re.Match) -> None:
    """"number of patients per city": the counted noun also names what is moved (the catalog links it)."""
    counted = re.search(r"\b(?:count(?:ing)?(?:\s+of)?|number\s+of|how\s+many|количество|число|сколько)\s+(?:the\s+|all\s+)?"
                        r"(?:(?:distinct|unique|уникальн\w+)\s+)?(?!(?:by|per|for|in|from|to|into|as|and|or|each|every|with|where)\b)"
                        r"(?P<noun>\w+(?:-\w+)*)", m.group(0), re.I)
    if counted and counted.group("noun").lower() not in ENTITY_NOUNS | {"rows", "records", "entries", "lines", "строк"}:
        # "count of no-shows": which rows those are is a filter the grammar does not know; counting all rows
        # would load other data than asked. The catalog may know it (a status value no_show): grounding.
        start = m.start() + counted.start("noun")
        d.counted.append((start, start + len(counted.group("noun")), counted.group("noun")))
        d.ask("aggregate", f"Count which rows: what makes a row one of the '{counted.group('noun')}'?",
              f"Какие строки считать: что делает строку '{counted.group('noun')}'?")
        return
    if counted:
        start = m.start() + counted.start("noun")
        sc.hits.append(Hit(start, start + len(counted.group("noun")), counted.group("noun"),
                           f"what is moved: {counted.group('noun')}"))
        d.subject.append(counted.group("noun"))


def _ask_measure(d: Draft) -> None:
    d.ask("aggregate", "What should be computed per group (for example 'summing amount per day'), and per "
                       "which single period?", "Что считать по группам (например, 'сумма amount по дням') и по "
                                               "какому одному периоду?")


def parse_measure(text: str) -> Optional[dict[str, Any]]:
    """A measure named after "by" in a ranking ("by revenue", "by order count", "by orders"), else None."""
    t = " ".join(text.lower().split())
    if t in ENTITY_NOUNS and t.endswith(("s", "ы", "и")) or re.fullmatch(r"(?:the\s+)?most\s+\w+", t):
        return {"fn": "count", "column": None, "alias": "row_count"}
    if re.fullmatch(_MEASURE_EN + "|" + _MEASURE_RU, t) and not re.fullmatch(r"counts?", t):
        return _measure(text)
    return None


def _measure(text: str) -> Optional[dict[str, Any]]:
    text = _ru_measure_words(text)
    t, _, alias = " ".join(text.lower().split()).partition(" as ")
    for word in (" called ", " named ", " как "):
        if word in t:
            t, _, alias = t.partition(word)
    measure = _measure_of(t.strip())
    if measure is not None and alias:
        measure["alias"] = text.split()[-1]  # the user's spelling of the name
    return measure


def _ru_measure_words(text: str) -> str:
    """«средняя стоимость приёма» -> «средняя price», «сумма оплат» -> «сумма amount», «сколько X» -> count."""
    if not re.search(r"[а-яё]", text, re.I) or re.search(r"выручк|продаж|\bчек", text, re.I):
        return text
    if re.match(r"сколько\b", text, re.I):
        return "количество " + text.split(None, 1)[-1]
    m = re.fullmatch(rf"(?:(?P<fn>\w+)\s+)?(?P<noun>{_RU_NOUN}){_RU_OF}(?P<rest>\s+(?:как|as|called|named)\s+\S+)?",
                     text.strip(), re.I)
    if not m:
        return text
    noun = next(v for k, v in MEASURE_NOUNS_RU.items() if m.group("noun").lower().startswith(k))
    fn = m.group("fn") or ("сумма" if noun == "amount" else "")
    if not fn or fn.lower().startswith("сумм") and m.group("noun").lower().startswith("сумм"):
        fn = "сумма"
    return f"{fn} {noun}{m.group('rest') or ''}"


def _measure_of(t: str) -> Optional[dict[str, Any]]:
    if re.search(r"\b(?:distinct|unique)\b|уникальн|различн", t):
        return None  # count(distinct ...) is not in the spec: ask rather than count rows
    m = re.fullmatch(r"(?:(?:total|overall|gross)\s+)?(revenue|sales|turnover)|(?:общ\w+\s+)?(выручк\w*|продаж\w*)", t)
    if m:
        return {"fn": "sum", "column": "amount", "alias": m.group(1) or "revenue"}
    if re.fullmatch(r"average\s+order\s+value|aov|average\s+(?:check|basket)|средн\w+\s+чек\w*", t):
        return {"fn": "avg", "column": "amount", "alias": "avg_order_value"}
    m = re.fullmatch(r"(\S+)\s+(?:totals?|sums?)", t)  # "fee totals"
    if m:
        col = column_name(m.group(1))
        return {"fn": "sum", "column": col, "alias": f"sum_{col}"}
    for pattern, fn in ((r"(?:total|sum\s+of|summing(?:\s+up)?|sum|summed|сумм\w*|суммируя|итог\w*)\s+"
                         rf"(?:по\s+полю\s+)?(?:the\s+)?{_OF_ONE}(\S+)", "sum"),
                        (rf"(?:average|avg|mean|averaging|средн\w+)\s+(?:of\s+)?(?:the\s+)?{_OF_ONE}(\S+)", "avg"),
                        (r"(min|max|lowest|highest|smallest|largest|минимальн\w+|максимальн\w+)(?:imum)?\s+"
                         r"(?:of\s+)?(?:the\s+)?(\S+)", "minmax")):
        m = re.fullmatch(pattern, t)
        if m:
            fn = _MIN_MAX.get(m.group(1)[:4], "min") if fn == "minmax" else fn
            col = column_name(t.split()[-1])
            return {"fn": fn, "column": col, "alias": f"{fn}_{col}"}
    if re.search(r"count|number|how many|количество|число", t):
        return {"fn": "count", "column": None, "alias": "row_count"}
    return None


_MIN_MAX = {"min": "min", "mini": "min", "lowe": "min", "smal": "min", "мини": "min", "max": "max", "maxi": "max",
            "high": "max", "larg": "max", "макс": "max"}


def _passive_measure(sc: Scanner, d: Draft, verb: str, col: Optional[str]) -> list[Optional[dict[str, Any]]]:
    verb = verb.lower()
    if verb.startswith("count"):
        return [{"fn": "count", "column": None, "alias": "row_count"}]
    rows_noun = col and col.lower() in ENTITY_NOUNS and col.lower().endswith(("s", "ы", "и"))  # "orders summed"
    if col and not rows_noun and not any(w in col.lower() for w in MONEY_WORDS):
        # "amount summed per customer"
        fn = "avg" if verb.startswith("averag") else "sum"
        name = column_name(col)
        return [{"fn": fn, "column": name, "alias": f"{fn}_{name}"}]
    if not verb.startswith("averag") and any(w in sc.text.lower() for w in MONEY_WORDS):
        return [{"fn": "sum", "column": "amount", "alias": "revenue"}]
    return [None]


# --- cleaning --------------------------------------------------------------------------------------

def _add_cleaning(sc: Scanner, d: Draft, m: re.Match, op: str, col: str, value: Optional[str] = None) -> None:
    step = {"op": op, "column": col, "value": value}
    if step not in d.cleaning:
        d.cleaning.append(step)
    sc.take(m, f"{op} {col}" + (f" with '{value}'" if value is not None else ""))
    if op == "dedupe" and col != "*":
        d.add_check({"kind": "unique", "column": col})
    if op == "fill_empty":
        d.add_check({"kind": "not_null", "column": col})


def scan_cleaning(sc: Scanner, d: Draft) -> None:
    case_words = {"lowercase": r"lower-?casing|lower-?case|downcasing|downcase",
                  "uppercase": r"upper-?casing|upper-?case|upcasing|upcase"}
    for op, verbs in case_words.items():
        word = op[:5]
        for pattern in (rf"\b(?:{verbs})\s+(?:the\s+|all\s+)?{column('col')}(?:\s+column)?",
                        rf"\b(?:converting|turning|making)\s+(?:the\s+|all\s+)?{column('col')}(?:\s+column)?\s+"
                        rf"(?:to\s+|into\s+)?{word}\s*-?case\b",
                        rf"\bприводя\s+{column('col', True)}\s+к\s+{'нижнему' if word == 'lower' else 'верхнему'}"
                        rf"\s+регистру"):
            for m in list(sc.finditer(pattern)):
                _add_cleaning(sc, d, m, op, column_name(m.group("col")))
    _scan_trim_fill(sc, d)
    _scan_dedupe(sc, d)


def _scan_trim_fill(sc: Scanner, d: Draft) -> None:
    trims = (rf"\b(?:trimming|trim|stripping|strip)\s+(?:(?:whitespace|spaces)\s+(?:from|in|around|of)\s+)?"
             rf"(?:the\s+|all\s+)?{column('col')}(?:\s+column)?",
             rf"\b(?:removing|remove)\s+(?:whitespace|spaces)\s+(?:from|in|around)\s+(?:the\s+)?{column('col')}",
             rf"\b(?:обрезая|убирая)\s+пробелы\s+(?:в|из|у)\s+{column('col', True)}")
    for pattern in trims:
        for m in list(sc.finditer(pattern)):
            _add_cleaning(sc, d, m, "trim", column_name(m.group("col")))
    val = r"(?P<val>'[^']*'|\"[^\"]*\"|[\w\-]+)"
    fills = (rf"\b(?:filling|fill|replacing|replace|defaulting|default)\s+(?:in\s+)?(?:an?\s+|the\s+|all\s+)?"
             rf"(?:empty|missing|blank|null)\s+{column('col')}(?:\s+(?:column|values?|fields?))?\s+"
             rf"(?:with|by|to|as)\s+{val}",
             rf"\bзаполняя\s+пуст\w*\s+(?:значения\s+)?(?:поля\s+|колонки\s+)?{column('col', True)}\s+"
             rf"(?:значением\s+)?{val}")
    for pattern in fills:
        for m in list(sc.finditer(pattern)):
            _add_cleaning(sc, d, m, "fill_empty", column_name(m.group("col")), str(literal(m.group("val"))))


def _scan_dedupe(sc: Scanner, d: Draft) -> None:
    verbs = (r"removing|remove|dropping|drop|eliminating|eliminate|deduplicating|deduplicate|de-duplicating|"
             r"deduping|dedupe|dedup")
    dupes = r"(?:the\s+|all\s+)?(?:duplicates?|duplicate\s+rows|dupes|doubles)"
    for pattern in (rf"\b(?:{verbs})\s+(?:{dupes}\s+)?(?:by|on|of|per|based\s+on|using)\s+(?:the\s+)?{column('col')}",
                    rf"\b(?:удаляя|убирая|исключая|удалив|убрав)\s+(?:дубл\w*|повтор\w*)\s+(?:по\s+)?"
                    rf"{column('col', True)}"):
        for m in list(sc.finditer(pattern)):
            _add_cleaning(sc, d, m, "dedupe", column_name(m.group("col")))
    for m in list(sc.finditer(rf"\b(?:{verbs})\s+{dupes}\b|\b(?:удаляя|убирая)\s+(?:дубл\w*|повтор\w*)")):
        _add_cleaning(sc, d, m, "dedupe", "*")


# --- PII -------------------------------------------------------------------------------------------

_PII_EMAIL = r"e-?mail(?:\s+address(?:es)?|s)?|email\w*|почт\w*|адреса\s+(?:электронной\s+)?почты|электронн\w+\s+адрес\w*"
_PII_PHONE = r"phone(?:\s+numbers?|s)?|телефон\w*|номера\s+телефонов"


def scan_pii(sc: Scanner, d: Draft) -> None:
    verbs = {"mask": r"masking|mask|redacting|redact|anonymi[sz]ing|anonymi[sz]e|obfuscating|obfuscate|"
                     r"маскируя|маскировать|замаскируй|замаскировав|скрывая|скрыть",
             "hash": r"hashing|hash|pseudonymi[sz]ing|pseudonymi[sz]e|хешируя|хэшируя|хешировать|хэшировать"}
    known = rf"(?:{_PII_EMAIL}|{_PII_PHONE})"
    one = rf"(?:{known}|(?:the\s+)?{IDENT}\s+column|column\s+{IDENT})"
    first = rf"(?:{one}|{NOT_A_COLUMN}{IDENT})"
    for action, verb in verbs.items():
        pattern = (rf"\b(?:{verb})\s+(?:the\s+|all\s+|any\s+)?(?P<what>{first}(?:\s*(?:,|and|и)\s*(?:the\s+)?"
                   rf"{one})*)")
        for m in list(sc.finditer(pattern)):
            items = re.split(r"\s*(?:,|\band\b|\bи\b)\s*", m.group("what"))
            sc.take(m, f"{action} columns " + ", ".join(_add_pii(d, item, action) for item in items))
    drop = (rf"\b(?:dropping|drop|excluding|exclude|without|removing|remove)\s+(?:the\s+)?(?P<col>{IDENT})\s+column\b|"
            rf"\b(?:без|исключив|убрав|кроме)\s+(?:колонки|поля|столбца)\s+(?P<col2>{IDENT})")
    for m in list(sc.finditer(drop)):
        col = column_name(m.group("col") or m.group("col2"))  # a named column is that column, not a pattern
        if {"column": col, "action": "drop"} not in d.pii:
            d.pii.append({"column": col, "action": "drop"})
        sc.take(m, f"drop column {col}")


def _add_pii(d: Draft, item: str, action: str) -> str:
    item = re.sub(r"^(?:the\s+)|\s+column$|^column\s+", "", item.strip(), flags=re.I)
    if re.fullmatch(_PII_EMAIL, item, re.I):
        col, check = "*email*", "no_email"
    elif re.fullmatch(_PII_PHONE, item, re.I):
        col, check = "*phone*", "no_phone"
    else:
        col, check = column_name(item), None
    rule = {"column": col, "action": action}
    if rule not in d.pii:
        d.pii.append(rule)
    if check and action != "drop":
        d.add_check({"kind": check})
    return col


# --- explicit quality checks -----------------------------------------------------------------------

def scan_quality(sc: Scanner, d: Draft) -> None:
    verbs = r"checking|ensuring|making\s+sure|check|ensure|verify|verifying|проверяя|проверив"
    for m in list(sc.finditer(rf"\b(?:{verbs})\s+(?:that\s+)?{column('col')}\s+is\s+(?P<what>not\s+null|never\s+null|"
                              rf"unique|non-empty|not\s+empty)\b")):
        kind = "unique" if m.group("what").lower() == "unique" else "not_null"
        col = column_name(m.group("col"))
        d.add_check({"kind": kind, "column": col})
        sc.take(m, f"check {kind}({col})")
    for m in list(sc.finditer(rf"\b(?:expecting\s+)?(?:at\s+least|minimum\s+of|не\s+менее)\s+(?P<n>{NUMBER})\s+"
                              rf"(?:rows|records|строк)\b")):
        n = int(re.sub(r"[ ,_]", "", m.group("n")))
        d.add_check({"kind": "row_count_min", "value": n})
        sc.take(m, f"check at least {n} rows")
