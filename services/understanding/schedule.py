"""Schedules: English and Russian phrases, and cron literals, to 5-field cron expressions.

The rules run most-specific first ("every day at 2 AM" before a bare "daily") so a phrase is consumed
once. A bare period ("daily", "ежедневно") means midnight, as in Airflow's @daily; that default is noted.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

from .draft import Draft
from .lexicon import WEEKDAYS, WEEKDAYS_RU
from .scanner import Scanner

_TIME_EN = (r"(?:(?P<past>five|ten|twenty|twenty-five|quarter|half|\d{1,2})\s+(?:minutes\s+)?past\s+(?P<word2>noon|midnight|"
            r"\d{1,2}(?:\s*(?P<ampm2>a\.?m\.?|p\.?m\.?))?)|(?P<word>noon|midnight)|(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*"
            r"(?P<ampm>a\.?m\.?|p\.?m\.?|h\b)?)(?![\w:])")
_TIME_RU = (r"в\s+(?:(?P<word>полночь|полдень)|(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?"
            r"(?:\s*час(?:а|ов)?)?(?:\s+(?P<part>ночи|утра|дня|вечера))?)(?![\w:])")
_DAILY_EN = (r"(?:every\s+day|each\s+day|daily|every\s+(?:night|nite|evening)|each\s+night|nightly|nitely|"
             r"once\s+a\s+day)")
_DAILY_RU = r"(?:ежедневно|каждый\s+день|каждую\s+ночь|раз\s+в\s+(?:день|сутки)|каждые\s+сутки|ежесуточно)"
_WD_EN = "|".join(sorted(WEEKDAYS, key=len, reverse=True))
_WD_RU = "|".join(sorted(WEEKDAYS_RU, key=len, reverse=True))
_CRON_FIELD = r"[\d*/,\-?A-Za-z#]+"
_CRON5 = rf"{_CRON_FIELD}(?:\s+{_CRON_FIELD}){{4}}"


def _hour_minute(m: re.Match) -> Optional[tuple[int, int]]:
    """(hour, minute) of a time match, or None when it is not a valid time of day."""
    if m.groupdict().get("past"):  # "five past midnight", "quarter past 6 pm"
        base = re.fullmatch(r"(\d{1,2})(?:\s*(?:a\.?m\.?|p\.?m\.?))?", m.group("word2"), re.I)
        hour = {"noon": 12, "midnight": 0}.get(m.group("word2").lower())
        if base:
            hour = _apply_part(int(base.group(1)), m.group("ampm2"), None)
        minute = _PAST.get(m.group("past").lower()) or int(m.group("past"))
        return (hour, minute) if hour is not None and 0 <= hour <= 23 and 0 <= minute <= 59 else None
    word = (m.group("word") or "").lower()
    if word in ("noon", "полдень"):
        return 12, 0
    if word in ("midnight", "полночь"):
        return 0, 0
    hour, minute = int(m.group("h")), int(m.group("m") or 0)
    hour = _apply_part(hour, m.groupdict().get("ampm"), m.groupdict().get("part"))
    if hour is None or not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return hour, minute


_PAST = {"five": 5, "ten": 10, "twenty": 20, "twenty-five": 25, "quarter": 15, "half": 30}


def _apply_part(hour: int, ampm: Optional[str], part: Optional[str]) -> Optional[int]:
    ampm = (ampm or "").lower().replace(".", "")
    if ampm in ("am", "pm"):
        if not 1 <= hour <= 12:
            return None
        return hour % 12 + (12 if ampm == "pm" else 0)
    part = (part or "").lower()
    if part == "ночи":
        return 0 if hour == 12 else hour
    if part in ("дня", "вечера") and hour < 12:
        return hour + 12
    return hour


def _cron_valid(expr: str) -> bool:
    from croniter import croniter  # local: importing the grammar stays cheap

    return len(expr.split()) == 5 and croniter.is_valid(expr)


def _add(sc: Scanner, d: Draft, m: re.Match, cron: str) -> None:
    sc.take(m, f"schedule {cron}")
    d.crons.append((cron, m.group(0)))


def _timed(sc: Scanner, d: Draft, pattern: str, make: Callable[[re.Match, int, int], str]) -> None:
    for m in list(sc.finditer(pattern)):
        hm = _hour_minute(m)
        if hm is None:
            d.ask("schedule", f'"{m.group(0)}" is not a valid time of day: at what time should it run?',
                  f'"{m.group(0)}" - не время суток: во сколько запускать?')
            sc.take(m)
            continue
        _add(sc, d, m, make(m, *hm))


def _weekday(m: re.Match, table: dict[str, int]) -> str:
    day = m.group("wd").lower()
    return "1-5" if day.startswith(("weekday", "будн", "рабоч")) else str(table[day])


def scan_cron_literals(sc: Scanner, d: Draft) -> None:
    prefix = (r"(?:\b(?:on|with|using|by|at)\s+)?(?:\b(?:the\s+|a\s+)?(?:cron|schedule)(?:\s+expression)?"
              r"\s*:?\s*)?(?:\bпо\s+(?:расписанию|крону)\s*)?")
    for m in list(sc.finditer(prefix + rf"[`'\"](?P<cron>{_CRON5})[`'\"]")):
        _cron_literal(sc, d, m)
    for m in list(sc.finditer(rf"\bcron\s*:?\s*(?P<cron>{_CRON5})(?!\S)")):
        _cron_literal(sc, d, m)


def _cron_literal(sc: Scanner, d: Draft, m: re.Match) -> None:
    cron = " ".join(m.group("cron").split())
    if not _cron_valid(cron):
        d.ask("schedule", f"{cron!r} is not a valid cron expression (minute hour day month weekday).",
              f"{cron!r} - неверное cron-выражение (минута час день месяц день_недели).")
        sc.take(m)
        return
    _add(sc, d, m, cron)


def scan_schedules_en(sc: Scanner, d: Draft) -> None:
    t = _TIME_EN
    _timed(sc, d, rf"\b{_DAILY_EN}\s+at\s+{t}", lambda m, h, mi: f"{mi} {h} * * *")
    _timed(sc, d, rf"\bat\s+{t}\s+{_DAILY_EN}\b", lambda m, h, mi: f"{mi} {h} * * *")
    wd = rf"(?:(?:every|each|on)\s+)(?P<wd>weekdays?|{_WD_EN})"
    _timed(sc, d, rf"\b(?:weekly\s+)?{wd}\s+at\s+{t}",
           lambda m, h, mi: f"{mi} {h} * * {_weekday(m, WEEKDAYS)}")
    _timed(sc, d, rf"\bat\s+{t}\s+{wd}\b", lambda m, h, mi: f"{mi} {h} * * {_weekday(m, WEEKDAYS)}")
    _timed(sc, d, rf"\bon\s+the\s+(?P<dom>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:day\s+)?of\s+(?:every|each|the)\s+"
                  rf"month\s+at\s+{t}", lambda m, h, mi: f"{mi} {h} {int(m.group('dom'))} * *")
    _every_n(sc, d, r"\bevery\s+(?P<n>\d+)\s+(?:minutes?|mins?)\b", "minute")
    _every_n(sc, d, r"\bevery\s+(?P<n>\d+)\s+hours?\b", "hour")
    for m in list(sc.finditer(r"\b(?:hourly|every\s+hour|each\s+hour|once\s+an\s+hour)\s*,?\s+at\s+(?:(?P<past>five|ten|"
                              r"twenty|twenty-five|quarter|half|\d{1,2})\s+(?:minutes\s+)?past(?:\s+the\s+hour)?|:(?P<mm>\d{2})|"
                              r"(?P<mins>\d{1,2})\s+minutes\s+past(?:\s+the\s+hour)?)(?![\w:])")):
        minute = _PAST.get((m.group("past") or "").lower()) or int(m.group("past") or m.group("mm") or m.group("mins"))
        if 0 <= minute <= 59:
            _add(sc, d, m, f"{minute} * * * *")
    _fixed(sc, d, r"\b(?:every|each)\s+minute\b", "* * * * *")
    _fixed(sc, d, r"\b(?:hourly|every\s+hour|each\s+hour|once\s+an\s+hour)\b", "0 * * * *")
    for m in list(sc.finditer(rf"\b(?:every|each|on)\s+(?P<wd>weekdays?|{_WD_EN})\b")):
        _add(sc, d, m, f"0 0 * * {_weekday(m, WEEKDAYS)}")
        d.default(f'"{m.group(0)}" without a time runs at midnight')
    _bare(sc, d, rf"\b{_DAILY_EN}\b", "0 0 * * *", "midnight")
    _bare(sc, d, r"\b(?:weekly|every\s+week|once\s+a\s+week)\b", "0 0 * * 0", "Sunday midnight (like @weekly)")
    _bare(sc, d, r"\b(?:monthly|every\s+month|once\s+a\s+month)\b", "0 0 1 * *",
          "midnight on the 1st (like @monthly)")


def scan_schedules_ru(sc: Scanner, d: Draft) -> None:
    t = _TIME_RU
    _timed(sc, d, rf"\b{_DAILY_RU}\s+{t}", lambda m, h, mi: f"{mi} {h} * * *")
    _timed(sc, d, rf"(?<!\w){t}\s+{_DAILY_RU}\b", lambda m, h, mi: f"{mi} {h} * * *")
    wd = rf"(?:каждый|каждую|каждое|по)\s+(?P<wd>{_WD_RU}|будням|будним\s+дням|рабочим\s+дням)"
    _timed(sc, d, rf"\b{wd}\s+{t}", lambda m, h, mi: f"{mi} {h} * * {_weekday(m, WEEKDAYS_RU)}")
    _timed(sc, d, rf"(?<!\w){t}\s+{wd}\b", lambda m, h, mi: f"{mi} {h} * * {_weekday(m, WEEKDAYS_RU)}")
    _every_n(sc, d, r"\bкаждые\s+(?P<n>\d+)\s+минут\w*", "minute")
    _every_n(sc, d, r"\bкаждые\s+(?P<n>\d+)\s+час\w*", "hour")
    _fixed(sc, d, r"\bкаждую\s+минуту\b", "* * * * *")
    _fixed(sc, d, r"\b(?:каждый\s+час|ежечасно|раз\s+в\s+час)\b", "0 * * * *")
    _bare(sc, d, rf"\b{_DAILY_RU}\b", "0 0 * * *", "midnight")
    _bare(sc, d, r"\b(?:еженедельно|каждую\s+неделю|раз\s+в\s+неделю)\b", "0 0 * * 0",
          "Sunday midnight (like @weekly)")
    _bare(sc, d, r"\b(?:ежемесячно|каждый\s+месяц|раз\s+в\s+месяц)\b", "0 0 1 * *",
          "midnight on the 1st (like @monthly)")


def _every_n(sc: Scanner, d: Draft, pattern: str, unit: str) -> None:
    limit = 59 if unit == "minute" else 23
    for m in list(sc.finditer(pattern)):
        n = int(m.group("n"))
        if not 1 <= n <= limit:
            d.ask("schedule", f'"{m.group(0)}": cron supports every 1-{limit} {unit}s; which schedule?',
                  f'"{m.group(0)}": cron умеет интервалы 1-{limit}; какое расписание нужно?')
            sc.take(m)
            continue
        step = "*" if n == 1 else f"*/{n}"
        _add(sc, d, m, f"{step} * * * *" if unit == "minute" else f"0 {step} * * *")


def _fixed(sc: Scanner, d: Draft, pattern: str, cron: str) -> None:
    for m in list(sc.finditer(pattern)):
        _add(sc, d, m, cron)


def _bare(sc: Scanner, d: Draft, pattern: str, cron: str, when: str) -> None:
    for m in list(sc.finditer(pattern)):
        _add(sc, d, m, cron)
        d.default(f'"{m.group(0)}" without a time runs at {when}: {cron}')


def scan_timezone(sc: Scanner, d: Draft) -> None:
    for pattern, zone in ((r"\(?\b(?:in\s+)?(?:UTC|GMT)\b\)?", "UTC"),
                          (r"\b(?:Moscow\s+time|MSK)\b|\bпо\s+(?:московскому\s+времени|москве|мск)\b",
                           "Europe/Moscow")):
        for m in list(sc.finditer(pattern)):
            _set_zone(sc, d, m, zone)
    for m in list(sc.finditer(r"\b(?:in|timezone|tz|time\s*zone)\s+(?P<z>[A-Z][A-Za-z_]+/[A-Za-z_]+"
                              r"(?:/[A-Za-z_]+)?)")):
        _set_zone(sc, d, m, m.group("z"))


def _set_zone(sc: Scanner, d: Draft, m: re.Match, zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return  # not a zone after all; the words stay and are reported as not understood
    if d.timezone and d.timezone != zone:
        d.ask("schedule.timezone", f"Two time zones were given ({d.timezone}, {zone}); which one?",
              f"Указаны два часовых пояса ({d.timezone}, {zone}); какой нужен?")
    d.timezone = zone
    sc.take(m, f"timezone {zone}")
