"""Dates and date ranges: "since 2024-01-01", "between Jan 1 and Mar 31 2024", "in 2023", "last 30 days",
«за последние 7 дней», «с 1 января 2024».

Relative periods become ``within_last`` (evaluated when the run reads); absolute ones become ``>=`` the
first day and ``<`` the day after the last one, which is right for dates and timestamps alike (a
``between`` on a timestamp would drop the last day after midnight). A date without a year, or a calendar
word that needs today's date ("yesterday", "this month"), is asked about: the compiler is deterministic
and does not read the clock.
"""
from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Optional

from .draft import Draft
from .lexicon import DEFAULT_TIME_COLUMN, IDENT, STATUS_WORDS_RU
from .numbers import NUMBER_ANY, number_value
from .operations import add_filter
from .scanner import Scanner

_MONTHS_EN = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
              "oct": 10, "nov": 11, "dec": 12}
_MONTH_EN = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
             r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_MONTHS_RU = {"янв": 1, "фев": 2, "мар": 3, "апр": 4, "мая": 5, "май": 5, "мае": 5, "июн": 6, "июл": 7,
              "авг": 8, "сен": 9, "окт": 10, "ноя": 11, "дек": 12}
_MONTH_RU = r"(?:январ\w*|феврал\w*|март\w*|апрел\w*|ма[йяе]|июн\w*|июл\w*|август\w*|сентябр\w*|октябр\w*|ноябр\w*|декабр\w*)"
_YEAR = r"(?:19|20)\d{2}"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
# One date: ISO, 31.03.2024, "Jan 1[, 2024]", "1 Jan[ 2024]", "1st of January", «1 января [2024]».
DATE = (rf"(?:(?P<iso>{_YEAR}-\d{{1,2}}-\d{{1,2}}|{_YEAR}/\d{{1,2}}/\d{{1,2}})|(?P<dmy>\d{{1,2}}\.\d{{1,2}}\.{_YEAR})|"
        rf"(?P<mon>{_MONTH_EN})\s+(?P<d1>{_DAY})(?:,?\s+(?P<y1>{_YEAR}))?|"
        rf"(?P<d2>{_DAY})\s+(?:of\s+)?(?P<mon2>{_MONTH_EN}|{_MONTH_RU})(?:,?\s+(?P<y2>{_YEAR})(?:\s*(?:г\.|года?))?)?)"
        rf"(?![\w-])")
_UNITS = {"minute": "minute", "min": "minute", "hour": "hour", "hr": "hour", "h": "hour", "day": "day",
          "d": "day", "week": "week", "wk": "week", "w": "week", "mo": "month", "y": "year",
          "month": "month", "year": "year", "минут": "minute", "час": "hour", "ден": "day", "дня": "day", "дне": "day",
          "день": "day", "сут": "day", "недел": "week", "месяц": "month", "год": "year", "лет": "year"}
_UNIT_EN = r"(?P<unit>minutes?|mins?|hours?|hrs?|h|days?|d|weeks?|wks?|w|months?|mos?|years?|yrs?|y|quarters?)"
_UNIT_RU = r"(?P<unit>минут\w*|час\w*|дн\w+|день|сутки|недел\w+|месяц\w*|год\w*|лет|квартал\w*)"
# A column named before a date phrase must look like a time ("visit_date", "created_at", "ts"): another
# word there ("per country for 2024") belongs to another rule.
_TIME_COL = r"(?:[A-Za-z_][A-Za-z0-9_]*?(?:_at|_on|date|time|_ts|_dt|_day)|ts)(?![\w.])"
_BY_COL = rf"(?:\s+(?:by|on|of|using|based\s+on|according\s+to|по)\s+(?:the\s+)?(?:(?:поле|полю)\s+)?(?P<bycol>{IDENT}))?"
_CREATED = r"(?:created|placed|made|submitted|booked|opened|созданн\w+|оформленн\w+|зарегистрированн\w+)"
# An event's participle before a date names the time column ("scheduled in March" -> scheduled_at, "hired
# before 2015" -> hired_on, linked from the catalog); generic ones (_CREATED) mean the default time column.
_EVENT = (r"(?!(?:pending|loaded|copied|moved|exported|"
          r"imported|synced|mirrored|filtered|grouped|ordered|sorted|aggregated|summed|counted|joined|limited|need|"
          r"based|red|bed)\b)(?:signed\s+up|[a-z]{3,}ed|taken|written|given|seen|done|sent|held|begun|drawn|born)")
_UPDATED = r"(?:updated|modified|changed|edited|обновлённ\w+|обновленн\w+|изменённ\w+|измененн\w+)"
# The same in Russian: a participle before a date («выписанные с 1 июня», «поступившие в 2025») names the
# event whose time dates a row; the catalog finds its column (grounding), or the question names the choices.
_EVENT_RU = (r"(?!(?:загруж|скопир|перенес|перенесён|выгруж|отфильтр|сгруппир|отсортир|перелит|залит|"
             + "|".join(STATUS_WORDS_RU) + r")\w*)"  # a status word stays a status filter («оплаченные»)
             r"[а-яё]{2,}(?:анн|янн|енн|ённ|вш|[аяиыуо]т)(?:ые|ый|ая|ое|ых|ую|ым|ыми|ой|ого|ий|ие|их|ее|ей)(?![\w-])")


def scan_dates(sc: Scanner, d: Draft) -> None:
    if not sc.has(r"\d|last|past|previous|recent|trailing|yesterday|today|tonight|this\s|ytd|mtd|to[\s-]date|"
                  r"последн|прошл|вчера|сегодня|этот|текущ|эту"):
        return
    lead = (rf"(?:(?:(?:who|that|which)\s+(?:were\s+|was\s+|have\s+been\s+|has\s+been\s+)?)?(?:last\s+|first\s+)?"
            rf"(?:(?P<who>{_CREATED}|{_UPDATED})\s+|(?P<event>{_EVENT}|{_EVENT_RU})\s+)|"
            rf"(?:with\s+|where\s+|whose\s+)?(?:last\s+)?(?P<col0>{_TIME_COL})\s+(?:is\s+)?)?")
    relative = (
        rf"\b{lead}(?:in|over|during|for|within|from)?\s*(?:the\s+)?(?:last|past|previous|recent|trailing)\s+"
        rf"(?:(?P<n>{NUMBER_ANY})\s*)?{_UNIT_EN}(?!\w)(?!\s+of\s+(?:19|20)\d\d){_BY_COL}",
        rf"\b{lead}(?:за|в\s+течение)\s+(?:последн\w+|прошл\w+)\s+(?P<n>{NUMBER_ANY}\s+)?{_UNIT_RU}{_BY_COL}",
    )
    for pattern in relative:
        for m in list(sc.finditer(pattern)):
            _relative(sc, d, m)
    for m in list(sc.finditer(r"\b(?:yesterday|today|tonight|this\s+(?:week|month|year|quarter)|last\s+(?:calendar\s+)?"
                              r"(?:quarter)(?!\s+of\s+(?:19|20)\d\d)|year[\s-]to[\s-]date|ytd|month[\s-]to[\s-]date|mtd|вчера|сегодня|"
                              r"(?:за\s+)?(?:этот|текущий)\s+(?:месяц|год)|(?:за\s+)?эту\s+неделю)\b")):
        d.ask("filters", f"'{m.group(0)}' depends on today's date; which dates exactly (e.g. 'since 2024-01-01', "
                         f"'in the last 1 day')?",
              f"'{m.group(0)}' зависит от сегодняшней даты; какие именно даты (например, 'с 2024-01-01', "
              f"'за последние 1 день')?")
        sc.take(m)
    _scan_absolute(sc, d, lead)


def _relative(sc: Scanner, d: Draft, m: re.Match) -> None:
    n = number_value(m.group("n")) if m.group("n") else 1
    unit_word = m.group("unit").lower()
    unit = next((u for stem, u in _UNITS.items() if unit_word.startswith(stem)), None)
    if unit_word.startswith(("quarter", "квартал")):
        n, unit = (n or 1) * 3, "month"
    if not isinstance(n, int) or n <= 0 or unit is None:
        return
    col = _column(d, m)
    value = f"{n} {unit}{'s' if n != 1 else ''}"
    add_filter(sc, d, m, col, "within_last", value)


def _column(d: Draft, m: re.Match) -> str:
    g = m.groupdict()
    if g.get("bycol"):
        return g["bycol"]
    if g.get("col0"):
        return g["col0"]
    if g.get("who") and re.match(_UPDATED, g["who"], re.I):
        return "updated_at"
    if g.get("event"):  # "hired before 2015", "taken in August 2026": the catalog links the word to its column
        return "registered" if re.match(r"signed\s+up", g["event"], re.I) else g["event"].lower()
    d.default(f"dates are compared on {DEFAULT_TIME_COLUMN} (say 'by <column>' to choose another)")
    return DEFAULT_TIME_COLUMN


def _scan_absolute(sc: Scanner, d: Draft, lead: str) -> None:
    one, two = DATE, _renamed(DATE, "b")
    # "from the 1st to March 7, 2026", «с 1 по 7 марта 2026»: the first day takes the second's month and year.
    day_only = rf"(?:the\s+)?(?P<d0>\d{{1,2}})(?:st|nd|rd|th)?"
    ranges = (rf"\b{lead}(?:between|from)\s+(?:{one}|{day_only})\s+(?:and|to|till|until|through|thru|-)\s+(?:the\s+)?{two}"
              rf"{_INCLUSIVE}{_BY_COL}",
              rf"\b{lead}(?:с|от)\s+(?:{one}|{day_only})\s+(?:по|до|-)\s+{two}{_INCLUSIVE}{_BY_COL}")
    for pattern in ranges:
        for m in list(sc.finditer(pattern)):
            _range(sc, d, m)
    _scan_quarters(sc, d, lead)
    year = rf"\b{lead}(?:in|for|during|over|за|в)\s+(?:(?:the\s+)?year\s+)?(?:(?P<month>{_MONTH_EN}|{_MONTH_RU})\s+)?" \
           rf"(?P<year>{_YEAR})(?:\s*(?:г\.|год\w*))?(?![\w-]){_BY_COL}"
    for m in list(sc.finditer(year)):
        _year_or_month(sc, d, m)
    onwards = r"(?:\s+(?:onwards?|on|forward))"
    bounds = ((r"since|starting(?:\s+from|\s+on|\s+with)?|as\s+of|on\s+or\s+after|начиная\s+с|с", ">=", 0, "?"),
              (r"from", ">=", 0, ""), (r"after|later\s+than|после", ">=", 1, "?"),
              (r"before|earlier\s+than|prior\s+to|до", "<", 0, "?"),
              (r"until|till|through|thru|up\s+to|on\s+or\s+before|по", "<", 1, "?"))
    year_bounds = ((r"since|from|starting(?:\s+from|\s+in)?|с|начиная\s+с", ">=", 0), (r"after|после", ">=", 1),
                   (r"before|prior\s+to|до", "<", 0), (r"until|till|through|thru|up\s+to|по", "<", 1))
    for words, op, shift in year_bounds:
        for m in list(sc.finditer(rf"\b{lead}(?:{words})\s+(?P<year>{_YEAR})(?:\s*(?:г\.|год\w*))?{onwards}?"
                                  rf"(?![\w.-]){_BY_COL}")):
            add_filter(sc, d, m, _column(d, m), op, date(int(m.group("year")) + shift, 1, 1).isoformat())
    for words, op, shift, optional in bounds:
        for m in list(sc.finditer(rf"\b{lead}(?:{words})\s+{one}{onwards}{optional}(?![\w-]){_BY_COL}")):
            day = _date(m, "")
            if day is None:
                _ask_date(sc, d, m)
                continue
            add_filter(sc, d, m, _column(d, m), op, (day + timedelta(days=shift)).isoformat())


_QUARTER_WORDS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
                  "last": 4, "перв": 1, "втор": 2, "трет": 3, "четвёрт": 4, "четверт": 4, "последн": 4}


def _scan_quarters(sc: Scanner, d: Draft, lead: str) -> None:
    """"in Q1 2026", "in the first quarter of 2026", «за первый квартал 2026 года», «во 2 квартале 2025»."""
    if not sc.has(r"\bq[1-4]|quarter|квартал"):
        return
    word = r"first|1st|second|2nd|third|3rd|fourth|4th|last|перв\w*|втор\w*|трет\w*|четв[её]рт\w*|последн\w*"
    patterns = (rf"\b{lead}(?:in|for|during|over|within|за|в|во)?\s*(?:the\s+)?(?:q(?P<q>[1-4])|(?P<qw>{word})\s+"
                rf"(?:quarter|квартал\w*)|(?P<qn>[1-4])(?:-?(?:й|м|st|nd|rd|th))?\s+(?:quarter|квартал\w*))\s*(?:of\s+|,\s*)?"
                rf"(?P<year>{_YEAR})(?:\s*(?:г\.|год\w*))?(?![\w-]){_BY_COL}",
                rf"\b{lead}(?:in|for|during|за|в)?\s*(?P<year>{_YEAR})[\s-]?q(?P<q>[1-4])\b{_BY_COL}")
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            g = m.groupdict()
            q = int(g.get("q") or g.get("qn") or 0) or next(
                (v for k, v in _QUARTER_WORDS.items() if (g.get("qw") or "").lower().startswith(k)), 0)
            if not q:
                continue
            y = int(m.group("year"))
            low, high = date(y, 3 * q - 2, 1), date(y + (q == 4), (3 * q) % 12 + 1, 1)
            col = _column(d, m)
            add_filter(sc, d, m, col, ">=", low.isoformat())
            add_filter(sc, d, m, col, "<", high.isoformat())


# The grammar's ranges already include their last day; saying so changes nothing.
_INCLUSIVE = r"(?:\s*,?\s*(?:включительно|inclusive(?:ly)?|(?:both\s+)?(?:ends|days|dates)\s+included|(?:both\s+)?inclusive))?"


def _renamed(pattern: str, suffix: str) -> str:
    return re.sub(r"\(\?P<(\w+)>", lambda g: f"(?P<{g.group(1)}{suffix}>", pattern)


def _date(m: re.Match, suffix: str, default_year: Optional[int] = None) -> Optional[date]:
    g = {k[: len(k) - len(suffix)] if suffix else k: v for k, v in m.groupdict().items()
         if (k.endswith(suffix) if suffix else not k.endswith("b"))}
    try:
        if g.get("iso"):
            y, mo, dd = map(int, re.split(r"[-/]", g["iso"]))
            return date(y, mo, dd)
        if g.get("dmy"):
            dd, mo, y = map(int, g["dmy"].split("."))
            return date(y, mo, dd)
        month, day_text, year = (g.get("mon"), g.get("d1"), g.get("y1")) if g.get("mon") else \
            (g.get("mon2"), g.get("d2"), g.get("y2"))
        if not month:
            return None
        y = int(year) if year else default_year
        if y is None:
            return None
        return date(y, _month(month), int(re.sub(r"\D", "", day_text)))
    except ValueError:
        return None


def _month(word: str) -> int:
    w = word.lower().rstrip(".")
    return _MONTHS_EN.get(w[:3]) or next(v for k, v in _MONTHS_RU.items() if w.startswith(k))


def _range(sc: Scanner, d: Draft, m: re.Match) -> None:
    high = _date(m, "b")
    low = _date(m, "", default_year=high.year if high else None)
    if m.groupdict().get("d0") and high is not None:
        try:
            low = high.replace(day=int(m.group("d0")))
        except ValueError:
            low = None
    if low is None or high is None or low > high:
        _ask_date(sc, d, m)
        return
    col = _column(d, m)
    add_filter(sc, d, m, col, ">=", low.isoformat())
    add_filter(sc, d, m, col, "<", (high + timedelta(days=1)).isoformat())


def _year_or_month(sc: Scanner, d: Draft, m: re.Match) -> None:
    y = int(m.group("year"))
    if m.group("month"):
        mo = _month(m.group("month"))
        low, high = date(y, mo, 1), date(y + (mo == 12), mo % 12 + 1, 1)
    else:
        low, high = date(y, 1, 1), date(y + 1, 1, 1)
    col = _column(d, m)
    add_filter(sc, d, m, col, ">=", low.isoformat())
    add_filter(sc, d, m, col, "<", high.isoformat())


def _ask_date(sc: Scanner, d: Draft, m: re.Match) -> None:
    d.ask("filters", f"'{m.group(0).strip()}': which exact dates, with the year (e.g. 2024-01-01)?",
          f"'{m.group(0).strip()}': какие точно даты, с годом (например, 2024-01-01)?")
    sc.take(m)
