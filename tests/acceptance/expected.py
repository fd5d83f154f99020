"""Expected rows of the corpus cases whose source is a file (or a Kafka feed made from one), computed here
from the files with the standard library, independently of the system's readers and SQL.

Each function takes the landing folder (the demo file connection's folder) and the case's ``args`` and
returns ``(columns, rows)``. Missing values: the CSV exports mark them ``NA`` or leave the field empty;
both are NULL (None), in every column.
"""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Callable, Optional

MISSING = {"NA", ""}
LAB_TYPES = {"result_id": int, "patient_id": int, "test_code": str, "value": float, "unit": str, "taken_at": str,
             "lab": str, "flag": str, "fasting_hours": int}


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _typed(row: dict, types: dict) -> dict:
    return {k: (None if v in MISSING else types.get(k, str)(v)) for k, v in row.items()}


def _lab_rows(landing: Path) -> list[dict]:
    return [_typed(r, LAB_TYPES) for r in _csv(landing / "lab_results.csv")]


def _table(rows: list[dict], columns: Optional[list[str]] = None) -> tuple[list[str], list[tuple]]:
    if columns is None:
        columns = list(rows[0]) if rows else []
    return columns, [tuple(r[c] for c in columns) for r in rows]


def lab_results(landing: Path, test_code: Optional[str] = None, value_present: bool = False,
                taken_month: Optional[str] = None, columns: Optional[list[str]] = None,
                flag: Optional[str] = None, fasting_min: Optional[int] = None):
    rows = _lab_rows(landing)
    if test_code is not None:
        rows = [r for r in rows if r["test_code"] == test_code]
    if value_present:
        rows = [r for r in rows if r["value"] is not None]
    if taken_month is not None:
        rows = [r for r in rows if r["taken_at"].startswith(taken_month)]
    if flag is not None:
        rows = [r for r in rows if r["flag"] == flag]
    if fasting_min is not None:
        rows = [r for r in rows if r["fasting_hours"] is not None and r["fasting_hours"] >= fasting_min]
    return _table(rows, columns or list(LAB_TYPES))


def lab_avg_by_test(landing: Path):
    values = defaultdict(list)
    for r in _lab_rows(landing):
        values[r["test_code"]]  # a test whose values are all missing still gets a (NULL) row
        if r["value"] is not None:
            values[r["test_code"]].append(r["value"])
    return ["test_code", "avg_value"], [(code, sum(v) / len(v) if v else None) for code, v in values.items()]


def lab_count_by_test(landing: Path):
    counts = Counter(r["test_code"] for r in _lab_rows(landing))
    return ["test_code", "results"], list(counts.items())


def lab_top(landing: Path, test_code: str, n: int):
    rows = [r for r in _lab_rows(landing) if r["test_code"] == test_code and r["value"] is not None]
    rows.sort(key=lambda r: r["value"], reverse=True)
    return _table(rows[:n], list(LAB_TYPES))


def lab_events(landing: Path):
    """The lab results as the JSON events the streaming cases produce (missing values as JSON null)."""
    return _table(_lab_rows(landing), list(LAB_TYPES))


def _orders_csv(landing: Path) -> list[dict]:
    types = {"order_id": int, "customer_id": int, "amount": Decimal}
    return [_typed(r, types) for r in _csv(landing / "orders.csv")]


def orders_csv(landing: Path):
    return _table(_orders_csv(landing))


def orders_csv_sum_by_status(landing: Path):
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for r in _orders_csv(landing):
        totals[r["status"]] += r["amount"]
    return ["status", "total_amount"], list(totals.items())


def customers_csv(landing: Path, city_present: bool = False):
    # phone stays text: "+79991234567" is an identifier, not a number
    rows = [_typed(r, {"customer_id": int}) for r in _csv(landing / "customers.csv")]
    if city_present:
        rows = [r for r in rows if r["city"] is not None]
    return _table(rows)


def products(landing: Path, top_by_price: Optional[int] = None):
    rows = [json.loads(line) for line in (landing / "products.jsonl").read_text(encoding="utf-8").splitlines()]
    if top_by_price is not None:
        rows = sorted(rows, key=lambda r: r["price"], reverse=True)[:top_by_price]
    return _table(rows, ["sku", "title", "price", "tags"])


def clicks(landing: Path, drop: Optional[list[str]] = None):
    rows = [json.loads(line) for line in (landing / "clicks.jsonl").read_text(encoding="utf-8").splitlines()]
    columns = [c for c in ("event_id", "ts", "page", "user_email") if c not in (drop or [])]
    return _table(rows, columns)


FUNCTIONS: dict[str, Callable] = {f.__name__: f for f in (
    lab_results, lab_avg_by_test, lab_count_by_test, lab_top, lab_events, orders_csv, orders_csv_sum_by_status,
    customers_csv, products, clicks)}
