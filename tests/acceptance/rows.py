"""Comparing the rows a target holds with the rows a case expects: a multiset of rows, numbers with a
tolerance, column names case-insensitive.

Engines spell the same value differently (PostgreSQL ``Decimal('1.50')``, ClickHouse ``1.5``, a CSV file
``"1.5"``; a day as ``date`` or as a midnight ``DateTime``; an array as a list or as JSON text), so both
sides are first brought to one canonical form; only then are they compared.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Optional

ABS_TOL = 0.006  # money has cents; an average computed in float vs numeric differs far below this
REL_TOL = 1e-6
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?([+-]\d{2}:?\d{2}|Z)?$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def canonical(v: Any, numeric_text: bool = False) -> Any:
    """One spelling per value: None, float for every number, 'YYYY-MM-DD[ HH:MM:SS]' for times, a JSON
    string for lists and objects, str for the rest. With ``numeric_text`` (a CSV target, where everything
    is text) numeric-looking text becomes a number; in a typed target a number stored as text stays text,
    so it differs from the expected number."""
    if v is None:
        return None
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float, Decimal)):
        f = float(v)
        return None if math.isnan(f) else f
    if isinstance(v, datetime):
        v = v.replace(tzinfo=None)
        return v.date().isoformat() if v.time() == time(0) else v.isoformat(sep=" ", timespec="seconds")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return json.dumps([canonical(x) for x in v])
    if isinstance(v, dict):
        return json.dumps({k: canonical(x) for k, x in sorted(v.items())})
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("utf-8", "replace")
    s = str(v)
    if _MONTH.match(s):
        return s + "-01"  # '2026-03' names the same month as date_trunc's 2026-03-01
    if _TS.match(s):
        try:
            return canonical(datetime.fromisoformat(s.replace("Z", "+00:00")))
        except ValueError:
            return s
    # "+7999..." (a phone) and "007" (a code) stay text: a target that made numbers of them is wrong.
    if numeric_text and _NUMBER.match(s) and s[0] != "+" and not (len(s) > 1 and s[0] == "0" and s[1] != "."):
        return float(s)
    if s[:1] in "[{":
        try:
            return canonical(json.loads(s))
        except ValueError:
            return s
    return s


def _rough(v: Any) -> Any:
    # Grouping key: floats rounded coarsely so that two values within tolerance usually share a bucket.
    return ("n", round(v, 1)) if isinstance(v, float) else ("v", v)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def _rows_close(a: tuple, b: tuple) -> bool:
    return all(_close(x, y) for x, y in zip(a, b))


def map_columns(expected: list[str], got: list[str], required: list[str]) -> tuple[Optional[list[int]], str]:
    """For each expected column, the index of the target column holding it, or (None, why).

    Same name (case-insensitive) first; the expected columns left over take the target's remaining columns
    in order (an aggregate's ``day`` may be called ``created_at`` in the target). Names in ``required``
    must be there by name. The target must have exactly as many columns as expected."""
    low = [g.lower() for g in got]
    missing = [r for r in required if r.lower() not in low]
    if missing:
        return None, f"target lacks the column(s) the request names: {missing}; it has {got}"
    if len(got) != len(expected):
        return None, f"target has {len(got)} columns {got}, expected {len(expected)} {expected}"
    index: list[Optional[int]] = [low.index(e.lower()) if e.lower() in low else None for e in expected]
    free = iter(i for i in range(len(got)) if i not in index)
    return [i if i is not None else next(free) for i in index], ""


def compare(expected_cols: list[str], expected_rows: list[tuple], got_cols: list[str], got_rows: list[tuple],
            required: list[str] = (), numeric_text: bool = False) -> tuple[bool, str]:
    """(True, summary) when the target holds exactly the expected multiset of rows; else (False, why).
    ``numeric_text``: the target is untyped text (CSV), so "1.5" there may stand for the number 1.5."""
    index, why = map_columns(expected_cols, got_cols, list(required))
    if index is None:
        return False, why
    want = [tuple(canonical(v) for v in row) for row in expected_rows]
    have = [tuple(canonical(row[i], numeric_text) for i in index) for row in got_rows]
    if len(want) != len(have):
        return False, f"{len(have)} rows in the target, {len(want)} expected"
    if Counter(want) == Counter(have):
        return True, f"{len(have)} rows match"
    # Exact spellings differ: pair rows within tolerance, bucket by bucket.
    buckets: dict[tuple, list[tuple]] = {}
    for row in have:
        buckets.setdefault(tuple(map(_rough, row)), []).append(row)
    unmatched = [row for row in want if not _take(row, buckets.get(tuple(map(_rough, row)), []))]
    # A value on a rounding edge falls in the neighbouring bucket: last resort, a scan of all that is left.
    # (Only for a few rows: when many differ the data is wrong anyway, and the scan would be quadratic.)
    rest = [r for b in buckets.values() for r in b]
    still = unmatched if len(unmatched) > 200 else [row for row in unmatched if not _take(row, rest)]
    if still:
        return False, (f"{len(still)} of {len(want)} expected rows not in the target, e.g. "
                       f"{_show(expected_cols, still[0])}; the target has e.g. "
                       f"{_show(expected_cols, rest[0] if rest else None)}")
    return True, f"{len(have)} rows match (within tolerance)"


def _take(row: tuple, pool: list[tuple]) -> bool:
    """Remove from ``pool`` one row equal to ``row`` within tolerance; False when there is none."""
    hit = next((i for i, cand in enumerate(pool) if _rows_close(row, cand)), None)
    if hit is not None:
        pool.pop(hit)
    return hit is not None


def _show(cols: list[str], row: Optional[tuple]) -> str:
    if row is None:
        return "nothing"
    return "{" + ", ".join(f"{c}={v!r}" for c, v in zip(cols, row)) + "}"
