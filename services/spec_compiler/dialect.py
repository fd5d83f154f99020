"""SQL text per dialect (postgres, clickhouse, sqlite, duckdb): identifiers, literals, periods, predicates.

Every filter op means the same in every dialect, SQL's way: a NULL matches no comparison, so ``!=``,
``not_in``, ``between`` and ``contains`` drop NULL rows as ``=`` does. ``contains`` is case-sensitive.
``between`` is inclusive; two plain dates (``YYYY-MM-DD``) bound whole days, so a time on the last day
is inside: ``c >= low AND c < high + 1 day`` (ClickHouse 18.16 cannot read a bare date as a DateTime, so
its bounds are written as midnight timestamps). ``within_last`` is evaluated by the source, when it reads.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Optional

from services.domain.spec import Filter

from .scope import SqlGenerationError
from .typemap import Canon

_RESERVED = frozenset("""all and any array as asc between by case cast check column constraint create cross current
default desc distinct do else end except false fetch for foreign from full grant group having in index inner
intersect interval into is join key left like limit natural not null offset on or order outer primary
references right select table then to true union unique user using values when where window with""".split())
PERIOD_SQL = {
    "postgres": {"day": "CAST({c} AS DATE)", "week": "CAST(DATE_TRUNC('week', {c}) AS DATE)",
                 "month": "CAST(DATE_TRUNC('month', {c}) AS DATE)", "hour": "DATE_TRUNC('hour', {c})"},
    "duckdb": {"day": "CAST({c} AS DATE)", "week": "CAST(DATE_TRUNC('week', {c}) AS DATE)",
               "month": "CAST(DATE_TRUNC('month', {c}) AS DATE)", "hour": "DATE_TRUNC('hour', {c})"},
    "clickhouse": {"day": "toDate({c})", "week": "toMonday({c})", "month": "toStartOfMonth({c})",
                   "hour": "toStartOfHour({c})"},
    "sqlite": {"day": "DATE({c})", "week": "DATE({c}, 'weekday 0', '-6 days')",
               "month": "DATE({c}, 'start of month')", "hour": "STRFTIME('%Y-%m-%d %H:00:00', {c})"},
}
_TEXT_CAST = {"postgres": "CAST({c} AS TEXT)", "clickhouse": "toString({c})", "sqlite": "{c}",
              "duckdb": "CAST({c} AS VARCHAR)"}
_FIND = {"postgres": "strpos({c}, {v}) > 0", "clickhouse": "position({c}, {v}) > 0", "sqlite": "instr({c}, {v}) > 0",
         "duckdb": "strpos({c}, {v}) > 0"}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RELATIVE_RE = re.compile(r"^\s*(\d+)\s+(minute|hour|day|week|month|year)s?\s*$")


def ident(name: str, dialect: str) -> str:
    """An identifier, quoted only when it has to be (mixed case, odd characters, reserved words)."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in _RESERVED:
        return name
    q = "`" if dialect == "clickhouse" else '"'
    return q + name.replace(q, q + q) + q


def table_ref(name: str, dialect: str) -> str:
    return ".".join(ident(part, dialect) for part in name.split("."))


def lit(value: Any, dialect: str) -> str:
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if dialect in ("postgres", "duckdb") else str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("'", "''")
    if dialect == "clickhouse":
        text = text.replace("\\", "\\\\")  # ClickHouse string literals treat backslash as an escape
    return f"'{text}'"


def condition(f: Filter, c: str, ctype: Optional[Canon], dialect: str) -> str:
    """The predicate of filter ``f`` on the column expression ``c`` (of type ``ctype`` when known)."""
    if f.op == "is_null":
        return f"{c} IS NULL"
    if f.op == "not_null":
        return f"{c} IS NOT NULL"
    if f.op in ("in", "not_in"):
        values = ", ".join(lit(v, dialect) for v in f.value)
        if f.op == "not_in" and dialect == "clickhouse":  # ClickHouse 18.16 finds NULL NOT IN a list of two
            return f"{c} IS NOT NULL AND {c} NOT IN ({values})"
        return f"{c} {'IN' if f.op == 'in' else 'NOT IN'} ({values})"
    if f.op == "between":
        return _between(c, ctype, f.value[0], f.value[1], dialect)
    if f.op == "within_last":
        return _within_last(c, ctype, f.value, dialect)
    if f.op == "contains":
        text = c if _is_text(ctype, dialect) else _TEXT_CAST[dialect].format(c=c)
        return _FIND[dialect].format(c=text, v=lit(f.value, dialect))
    return f"{c} {'<>' if f.op == '!=' else f.op} {_bound(f.value, ctype, dialect)}"


def _is_text(ctype: Optional[Canon], dialect: str) -> bool:
    # DuckDB sees topics and files whose types may be unknown here: a cast of text to text is harmless.
    return ctype.kind == "string" if ctype is not None else dialect != "duckdb"


def _between(c: str, ctype: Optional[Canon], low: Any, high: Any, dialect: str) -> str:
    if isinstance(low, str) and isinstance(high, str) and _DATE_RE.match(low) and _DATE_RE.match(high):
        try:
            after = (dt.date.fromisoformat(high) + dt.timedelta(days=1)).isoformat()
        except ValueError as exc:
            raise SqlGenerationError(f"between: {high!r} is not a date") from exc
        return f"{c} >= {_day(low, ctype, dialect)} AND {c} < {_day(after, ctype, dialect)}"
    return f"{c} BETWEEN {_bound(low, ctype, dialect)} AND {_bound(high, ctype, dialect)}"


def _day(day: str, ctype: Optional[Canon], dialect: str) -> str:
    if dialect == "clickhouse" and (ctype is None or ctype.kind == "timestamp"):
        return f"toDateTime('{day} 00:00:00')"
    return lit(day, dialect)


def _bound(value: Any, ctype: Optional[Canon], dialect: str) -> str:
    if dialect == "clickhouse" and isinstance(value, str) and ctype is not None and ctype.kind == "timestamp":
        # ClickHouse 18.16 reads 'YYYY-MM-DD hh:mm:ss' only: no ISO 'T', and a bare date is midnight.
        text = value.replace("T", " ")[:19]
        return lit(text + " 00:00:00" if _DATE_RE.match(text) else text, dialect)
    return lit(value, dialect)


def _within_last(c: str, ctype: Optional[Canon], value: str, dialect: str) -> str:
    m = _RELATIVE_RE.match(value)
    if not m:
        raise SqlGenerationError(f"within_last needs '<n> <unit>', got {value!r}")
    n, unit = int(m.group(1)), m.group(2)
    if dialect == "postgres":
        return f"{c} >= now() - interval '{n} {unit}s'"
    if dialect == "sqlite":  # SQLite's modifiers have no weeks; its datetime() also normalises 'T' and dates
        n, unit = (n * 7, "day") if unit == "week" else (n, unit)
        return f"datetime({c}) >= datetime('now', '-{n} {unit}s')"
    if dialect == "duckdb" and (ctype is None or ctype.kind not in ("date", "timestamp")):
        c = f"TRY_CAST({c} AS TIMESTAMP)"  # a CSV or JSON time is often text
    return f"{c} >= now() - INTERVAL {n} {unit.upper()}"


CLEANING_ORDER = {"trim": 0, "lowercase": 1, "uppercase": 1, "fill_empty": 2}  # trim before testing for empty


def cleaned(op: str, value: Optional[str], c: str, ctype: Optional[Canon], dialect: str) -> Optional[str]:
    """A row-wise cleaning step on ``c``; None when it cannot be said for this column (fill_empty of a
    non-text column would mix types). Every dialect trims spaces only, as PostgreSQL's TRIM does."""
    if op == "trim":  # ClickHouse 18.16 has no trim function
        return f"replaceRegexpAll({c}, '^ +| +$', '')" if dialect == "clickhouse" else f"TRIM({c})"
    if op in ("lowercase", "uppercase"):
        return f"{'lower' if op == 'lowercase' else 'upper'}({c})"
    if op == "fill_empty" and ctype is not None and ctype.kind == "string":
        return f"CASE WHEN {c} IS NULL OR {cleaned('trim', None, c, ctype, dialect)} = '' THEN {lit(value, dialect)} " \
               f"ELSE {c} END"
    return None

