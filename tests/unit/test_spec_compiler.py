"""The spec compiler: every spec field, compiled per dialect, run for real, gives the rows the spec means.

Each case is a spec fragment over two small tables (orders, customers) with NULLs, unmatched keys and
times relative to now. The compiled SQL runs in SQLite (in-process), current ClickHouse (chDB) and, for
file sources, the executor's DuckDB transform; tests/integration/test_spec_compiler_engines.py runs the
same cases on the stack's PostgreSQL and ClickHouse 18.16. The expected rows come from ``reference``, a
plain-Python reading of the spec's documented semantics, never from SQL.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
import sqlite3
from decimal import Decimal
from typing import Any, Optional

import pyarrow as pa
import pytest

from services.domain.spec import PipelineSpec, render_mermaid
from services.executor.batches import records_to_batch
from services.executor.transform import Transformer
from services.spec_compiler import SqlGenerationError, generate_sql, grain, needs_whole_input, output_shape

NOW = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def ago(**kw) -> dt.datetime:
    return NOW - dt.timedelta(**kw)


CUSTOMERS = [
    {"customer_id": 1, "name": "Ann", "country": "DE", "status": "active"},
    {"customer_id": 2, "name": "Bob", "country": "FR", "status": "active"},
    {"customer_id": 3, "name": "Cid", "country": None, "status": "blocked"},
    {"customer_id": 4, "name": "Dee", "country": "DE", "status": "active"},
]
ORDERS = [
    # January 2026, with the last day's afternoon and the next midnight around a date range's end
    {"order_id": 1, "customer_id": 1, "status": "paid", "amount": Decimal("10.00"), "note": "gift wrap",
     "created_at": dt.datetime(2026, 1, 1, 0, 0, 0)},
    {"order_id": 2, "customer_id": 2, "status": "paid", "amount": Decimal("25.50"), "note": "Gift card",
     "created_at": dt.datetime(2026, 1, 15, 9, 30, 0)},
    {"order_id": 2, "customer_id": 2, "status": "paid", "amount": Decimal("25.50"), "note": "Gift card",
     "created_at": dt.datetime(2026, 1, 15, 9, 30, 0)},  # loaded twice upstream: what dedupe is for
    {"order_id": 3, "customer_id": 1, "status": "cancelled", "amount": Decimal("99.99"), "note": None,
     "created_at": dt.datetime(2026, 1, 31, 13, 0, 0)},
    {"order_id": 4, "customer_id": 3, "status": "refunded", "amount": Decimal("5.25"), "note": "a gift",
     "created_at": dt.datetime(2026, 2, 1, 0, 0, 0)},
    {"order_id": 5, "customer_id": None, "status": None, "amount": Decimal("50.00"), "note": "no customer",
     "created_at": dt.datetime(2025, 12, 31, 23, 59, 59)},
    {"order_id": 6, "customer_id": 99, "status": "paid", "amount": None, "note": "unknown customer",
     "created_at": dt.datetime(2026, 1, 20, 12, 0, 0)},
    # relative to now, far from every within_last boundary used below
    {"order_id": 7, "customer_id": 4, "status": "paid", "amount": Decimal("70.00"), "note": "giftgift",
     "created_at": ago(days=2)},
    {"order_id": 8, "customer_id": 2, "status": " Paid ", "amount": Decimal("12.00"), "note": "x",
     "created_at": ago(days=5)},
    {"order_id": 9, "customer_id": 1, "status": "paid", "amount": Decimal("30.00"), "note": "y",
     "created_at": ago(days=10)},
    {"order_id": 10, "customer_id": 4, "status": "refunded", "amount": Decimal("8.00"), "note": "z",
     "created_at": ago(days=45)},
    {"order_id": 11, "customer_id": 2, "status": "paid", "amount": Decimal("40.00"), "note": "old",
     "created_at": ago(days=400)},
]

# Column types as each engine spells them (what introspection hands the compiler).
TYPES = {
    "postgres": {"orders": [("order_id", "bigint"), ("customer_id", "integer"), ("status", "text"),
                            ("amount", "numeric(12,2)"), ("note", "text"),
                            ("created_at", "timestamp without time zone")],
                 "customers": [("customer_id", "integer"), ("name", "text"), ("country", "text"), ("status", "text")]},
    "clickhouse": {"orders": [("order_id", "Int64"), ("customer_id", "Nullable(Int32)"), ("status", "Nullable(String)"),
                              ("amount", "Nullable(Decimal(12, 2))"), ("note", "Nullable(String)"),
                              ("created_at", "DateTime")],
                   "customers": [("customer_id", "Int32"), ("name", "String"), ("country", "Nullable(String)"),
                                 ("status", "String")]},
    "sqlite": {"orders": [("order_id", "INTEGER"), ("customer_id", "INTEGER"), ("status", "TEXT"),
                          ("amount", "NUMERIC"), ("note", "TEXT"), ("created_at", "TIMESTAMP")],
               "customers": [("customer_id", "INTEGER"), ("name", "TEXT"), ("country", "TEXT"), ("status", "TEXT")]},
    "file": {"orders": [("order_id", "int64"), ("customer_id", "int64"), ("status", "string"),
                        ("amount", "decimal128(12, 2)"), ("note", "string"), ("created_at", "timestamp[us]")]},
}

JOIN_C = {"table": "customers", "alias": "c", "on": ["customer_id"]}
CASES: dict[str, dict] = {
    "left_join_select": dict(joins=[{**JOIN_C, "kind": "left"}], select=["order_id", "c.name", "amount"]),
    "inner_join_all_columns_filter_on_joined": dict(
        joins=[JOIN_C], filters=[{"column": "c.country", "op": "=", "value": "DE"}]),
    "join_named_columns_and_rename": dict(
        joins=[{**JOIN_C, "kind": "left", "columns": ["status", "country"]}],
        filters=[{"column": "status", "op": "=", "value": "paid"}], rename={"c_status": "customer_status"}),
    "not_in": dict(filters=[{"column": "status", "op": "not_in", "value": ["cancelled", "refunded"]}]),
    "between_numbers": dict(filters=[{"column": "amount", "op": "between", "value": [10, 50]}]),
    "between_dates_whole_days": dict(filters=[{"column": "created_at", "op": "between",
                                               "value": ["2026-01-01", "2026-01-31"]}]),
    "within_last_days": dict(filters=[{"column": "created_at", "op": "within_last", "value": "7 days"}]),
    "within_last_weeks": dict(filters=[{"column": "created_at", "op": "within_last", "value": "2 weeks"}]),
    "within_last_month": dict(filters=[{"column": "created_at", "op": "within_last", "value": "1 month"}]),
    "within_last_year_and_compared_to_a_time": dict(filters=[
        {"column": "created_at", "op": "within_last", "value": "1 year"},
        {"column": "created_at", "op": ">=", "value": "2026-03-01 00:00:00"}]),
    "contains_is_case_sensitive": dict(filters=[{"column": "note", "op": "contains", "value": "gift"}]),
    "select_order_limit_rename": dict(select=["order_id", "amount"],
                                      order_by=[{"column": "amount", "descending": True}],
                                      limit=3, rename={"amount": "total"}),
    "order_by_unselected_column": dict(select=["order_id"], order_by=[{"column": "created_at"}], limit=4),
    "top_n_customers_by_revenue": dict(
        joins=[JOIN_C], aggregate={"dimensions": ["name"], "measures": [
            {"fn": "sum", "column": "amount", "alias": "revenue"}, {"fn": "count", "alias": "orders"}]},
        order_by=[{"column": "revenue", "descending": True}], limit=2, rename={"name": "customer"}),
    # what understanding emits for "join orders with customers on customer_id, sum amount per country for
    # paid orders": all joined columns, a filter on the source, a group by the joined table's column
    "aggregate_per_joined_column_filtered": dict(
        joins=[JOIN_C], filters=[{"column": "status", "op": "=", "value": "paid"}],
        aggregate={"dimensions": ["country"], "measures": [{"fn": "sum", "column": "amount", "alias": "revenue"},
                                                           {"fn": "count", "alias": "n"}]}),
    "top_n_by_measured_column_alias_clash": dict(
        aggregate={"dimensions": ["status"], "measures": [{"fn": "sum", "column": "amount", "alias": "amount"}]},
        order_by=[{"column": "amount", "descending": True}], limit=2),
    "aggregate_per_month_filtered": dict(
        filters=[{"column": "created_at", "op": "between", "value": ["2025-12-01", "2026-02-28"]},
                 {"column": "status", "op": "!=", "value": "cancelled"}],
        aggregate={"period": "month", "time_column": "created_at", "measures": [
            {"fn": "count", "alias": "n"}, {"fn": "max", "column": "amount", "alias": "top"}]}),
    "cleaning_before_grouping": dict(
        cleaning=[{"op": "trim", "column": "status"}, {"op": "lowercase", "column": "status"}],
        aggregate={"dimensions": ["status"], "measures": [{"fn": "count", "alias": "n"},
                                                          {"fn": "sum", "column": "amount", "alias": "revenue"}]},
        order_by=[{"column": "revenue", "descending": True}], limit=3),
    "cleaning_before_ranking_a_left_join": dict(
        joins=[{**JOIN_C, "kind": "left"}], select=["order_id", "c.name"],
        cleaning=[{"op": "uppercase", "column": "name"}, {"op": "fill_empty", "column": "name", "value": "ZZ"}],
        order_by=[{"column": "name", "descending": True}, {"column": "order_id"}], limit=4),
    "dedupe_before_aggregate": dict(
        cleaning=[{"op": "dedupe", "column": "order_id"}],
        aggregate={"dimensions": ["customer_id"], "measures": [{"fn": "count", "alias": "n"},
                                                               {"fn": "sum", "column": "amount", "alias": "revenue"}]},
        order_by=[{"column": "revenue", "descending": True}], limit=3),
    "whole_row_dedupe_before_top_n": dict(
        cleaning=[{"op": "dedupe", "column": "*"}], select=["order_id", "amount"],
        filters=[{"column": "amount", "op": ">=", "value": 25}],
        order_by=[{"column": "amount"}, {"column": "order_id"}], limit=3),
    "pii_after_rename": dict(select=["order_id", "note"], rename={"note": "customer_email"},
                             pii=[{"column": "*email*", "action": "drop"}],
                             filters=[{"column": "order_id", "op": "<=", "value": 3}]),
}
JOIN_CASES = {k for k, v in CASES.items() if v.get("joins")}


def spec_for(case: str, kind: str, orders: str = "orders", customers: str = "customers",
             target: Optional[dict] = None) -> dict:
    extra = json.loads(json.dumps(CASES[case]))
    for j in extra.get("joins", []):
        j["table"] = customers
    source = {"kind": kind, "path": "orders.parquet"} if kind == "file" else {"kind": kind, "table": orders}
    return {"source": source, "target": target or {"kind": "sqlite", "table": "out_rows"}, **extra}


# --- the reference: the spec's semantics in plain Python ------------------------------------------------

def reference(spec: dict, tables: dict[str, list[dict]], now: dt.datetime) -> list[dict]:
    """Rows the spec means, by its docstrings: joins, filters, aggregate/select, order/limit, rename, pii."""
    main = tables["orders"]
    rows = [{("", k): v for k, v in r.items()} for r in main]
    names = {("", c): c for c in main[0]}
    for j in spec.get("joins", []):
        right, a = tables["customers"], j["alias"]
        add = j.get("columns") or [c for c in right[0] if c not in j["on"]]
        for c in add:
            names[(a, c)] = c if c not in names.values() else f"{a}_{c}"
        joined = []
        for r in rows:
            hits = [m for m in right if all(r[("", k)] is not None and r[("", k)] == m[k] for k in j["on"])]
            joined += [{**r, **{(a, c): v for c, v in m.items()}} for m in hits]
            if not hits and j.get("kind") == "left":
                joined.append({**r, **{(a, c): None for c in right[0]}})
        rows = joined

    def field(ref: str):
        if "." in ref:
            return tuple(ref.split("."))
        return ("", ref) if ("", ref) in names else next(f for f, n in names.items() if n == ref)

    def name(f) -> str:
        return names.get(f) or (f"{f[0]}_{f[1]}" if f[1] in names.values() else f[1])

    rows = [r for r in rows if all(_matches(flt, r[field(flt["column"])], now) for flt in spec.get("filters", []))]
    for step in spec.get("cleaning", []):
        if step["op"] == "dedupe":  # one row per key (or per whole row); the duplicates here are identical
            seen: set = set()
            key = (lambda r: tuple(sorted(r.items(), key=str))) if step["column"] == "*" else \
                (lambda r: r[field(step["column"])])
            rows = [r for r in rows if not (key(r) in seen or seen.add(key(r)))]
            continue
        for r in rows:
            r[field(step["column"])] = _clean(step, r[field(step["column"])])
    agg = spec.get("aggregate")
    if agg:
        out = _reference_aggregate(agg, rows, field, name, set(names.values()))
    elif spec.get("select"):
        out = [{name(field(s)): r[field(s)] for s in spec["select"]} for r in rows]
        for o, r in zip(out, rows):  # an order_by column need not be selected: keep it aside
            o["__row"] = r
    else:
        out = [{n: r.get(f) for f, n in names.items()} for r in rows]
    for ob in reversed(spec.get("order_by", [])):
        key = ob["column"]
        if agg and out and key not in out[0]:  # a measure's alias (renamed off a source name) or its column
            key = next(k for m in agg["measures"] for k in (m["alias"], m["alias"] + "_agg")
                       if key in (m["alias"], m.get("column")) and k in out[0])

        def value(o, key=key):
            return o[key] if key in o else o["__row"][field(key)]
        present = [o for o in out if value(o) is not None]
        present.sort(key=value, reverse=ob.get("descending", False))
        out = present + [o for o in out if value(o) is None]
    if spec.get("limit"):
        out = out[:spec["limit"]]
    out = [{spec.get("rename", {}).get(k, k): v for k, v in o.items() if k != "__row"} for o in out]
    dropped = [p["column"] for p in spec.get("pii", []) if p["action"] == "drop"]
    return [{k: v for k, v in o.items() if not any(fnmatch.fnmatch(k, p) for p in dropped)} for o in out]


def _reference_aggregate(agg: dict, rows: list[dict], field, name, taken: set[str]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = tuple(r[field(d)] for d in agg.get("dimensions", []))
        if agg.get("period") == "month":
            key = (r[field(agg["time_column"])].date().replace(day=1),) + key
        groups.setdefault(key, []).append(r)
    out = []
    for key, members in groups.items():
        keys = ([agg["period"]] if agg.get("period") else []) + [name(field(d)) for d in agg.get("dimensions", [])]
        o = dict(zip(keys, key))
        for m in agg["measures"]:
            values = [r[field(m["column"])] for r in members] if m.get("column") else members
            values = [v for v in values if v is not None]
            fn = {"sum": lambda v: sum(v) if v else None, "count": len, "max": lambda v: max(v, default=None),
                  "min": lambda v: min(v, default=None)}[m["fn"]]
            alias = m["alias"] + ("_agg" if m["alias"] in taken else "")  # the documented dodge
            o[alias] = fn(values)
        out.append(o)
    return out


def _clean(step: dict, v: Any) -> Any:
    if step["op"] == "fill_empty":
        return step["value"] if v is None or str(v).strip(" ") == "" else v
    if v is None:
        return v
    return {"trim": lambda t: t.strip(" "), "lowercase": str.lower, "uppercase": str.upper}[step["op"]](v)


def _matches(f: dict, v: Any, now: dt.datetime) -> bool:
    op, want = f["op"], f.get("value")
    if op == "is_null":
        return v is None
    if v is None:
        return False  # SQL's way: NULL matches no comparison
    if isinstance(v, dt.datetime) and isinstance(want, str) and op != "within_last":
        want = dt.datetime.fromisoformat(want)
    if op == "=":
        return v == want
    if op == "!=":
        return v != want
    if op == "<":
        return v < want
    if op == "<=":
        return v <= want
    if op == ">=":
        return v >= want
    if op == "not_in":
        return v not in want
    if op == "between":
        lo, hi = want
        if isinstance(lo, str):  # two dates: whole days
            return dt.date.fromisoformat(lo) <= v.date() <= dt.date.fromisoformat(hi)
        return lo <= v <= hi
    if op == "within_last":
        n, unit = want.split()
        days = {"days": 1, "weeks": 7, "month": 30, "year": 365}[unit]
        return v >= now - dt.timedelta(days=int(n) * days)
    if op == "contains":
        return want in str(v)
    raise AssertionError(op)


def norm(rows: list[dict]) -> list[dict]:
    """Engine-neutral values: numbers as rounded floats, times and dates as ISO text."""
    def one(v):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float, Decimal)):
            return round(float(v), 4)
        if isinstance(v, dt.datetime):
            return v.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(v, dt.date):
            return v.isoformat()
        return v
    return [{k: one(v) for k, v in r.items()} for r in rows]


def same_rows(spec: dict, got: list[dict], want: list[dict]) -> None:
    got, want = norm(got), norm(want)
    if not (spec.get("order_by") and spec.get("limit")):  # only a top-N promises an order
        key = lambda r: json.dumps(r, sort_keys=True, default=str)  # noqa: E731
        got, want = sorted(got, key=key), sorted(want, key=key)
    assert got == want
    assert want, "a case must select some rows"


def finish(out: dict, extracted: list[dict]) -> list[dict]:
    """The rows the executor would load: the extract's rows through the compiled transform."""
    if not out["transform_sql"] or not extracted:
        return extracted
    with Transformer(out["transform_sql"]) as t:
        return t(records_to_batch(extracted)).to_pylist()


def check_ddl_columns(out: dict, rows: list[dict], declared: list[str]) -> None:
    assert declared == list(rows[0]), (declared, list(rows[0]))
    assert out["target_ddl"]


# --- SQLite (database source: everything pushed into the extract) ---------------------------------------

def _sqlite_value(v):
    return v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, dt.datetime) else float(v) if isinstance(v, Decimal) else v


@pytest.fixture
def sqlite_db():
    db = sqlite3.connect(":memory:")
    for table, rows in (("orders", ORDERS), ("customers", CUSTOMERS)):
        cols = TYPES["sqlite"][table]
        db.execute(f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t in cols)})")
        db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in cols)})",
                       [tuple(_sqlite_value(r[n]) for n, _ in cols) for r in rows])
    yield db
    db.close()


def sqlite_rows(db, sql: str) -> list[dict]:
    cur = db.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_sqlite_source_runs_each_field_in_the_extract(sqlite_db, case):
    spec = spec_for(case, "sqlite")
    out = generate_sql(spec, TYPES["sqlite"]["orders"], {"customers": TYPES["sqlite"]["customers"]})
    assert out["dialects"]["extract"] == "sqlite"
    rows = finish(out, sqlite_rows(sqlite_db, out["extract_sql"]))
    same_rows(spec, rows, reference(spec, {"orders": ORDERS, "customers": CUSTOMERS}, NOW))
    # the target DDL declares exactly the loaded columns: the rows insert into the table it creates
    sqlite_db.execute(out["target_ddl"])
    declared = [r[1] for r in sqlite_db.execute("PRAGMA table_info(out_rows)")]
    check_ddl_columns(out, rows, declared)
    sqlite_db.executemany(f"INSERT INTO out_rows VALUES ({', '.join('?' for _ in declared)})",
                          [tuple(_sqlite_value(r[c]) for c in declared) for r in rows])
    assert sqlite_db.execute("SELECT count(*) FROM out_rows").fetchone()[0] == len(rows)


def test_an_incremental_join_reads_past_the_cursor_in_cursor_order(sqlite_db):
    spec = {**spec_for("left_join_select", "sqlite"), "incremental": {"cursor_column": "created_at"}}
    out = generate_sql(spec, TYPES["sqlite"]["orders"], {"customers": TYPES["sqlite"]["customers"]})
    assert "WHERE orders.created_at > :cursor" in out["extract_sql"]
    rows = sqlite_db.execute(out["extract_sql"], {"cursor": "2026-01-20 00:00:00"}).fetchall()
    got = [r[0] for r in rows]
    want = sorted((r for r in ORDERS if r["created_at"] > dt.datetime(2026, 1, 20)), key=lambda r: r["created_at"])
    assert got == [r["order_id"] for r in want]
    assert len(sqlite_rows(sqlite_db, out["extract_sql_initial"])) == len(ORDERS)


# --- current ClickHouse (chDB) ---------------------------------------------------------------------------

chdb = pytest.importorskip("chdb")


def _ch_literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, dt.datetime):
        return f"'{v.strftime('%Y-%m-%d %H:%M:%S')}'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return str(v)


def ch_load(query, db: str, insert=None) -> None:
    """The two tables in ClickHouse ``db``: ``query`` runs one statement, ``insert(sql, rows)`` an INSERT
    (clickhouse-driver sends rows apart; chDB takes them inline)."""
    query(f"CREATE DATABASE IF NOT EXISTS {db}")
    for table, rows in (("orders", ORDERS), ("customers", CUSTOMERS)):
        cols = TYPES["clickhouse"][table]
        query(f"CREATE TABLE {db}.{table} ({', '.join(f'{n} {t}' for n, t in cols)}) ENGINE = MergeTree "
              f"ORDER BY {cols[0][0]}")
        if insert:
            insert(f"INSERT INTO {db}.{table} VALUES", [tuple(r[n] for n, _ in cols) for r in rows])
            continue
        values = ", ".join("(" + ", ".join(_ch_literal(r[n]) for n, _ in cols) + ")" for r in rows)
        query(f"INSERT INTO {db}.{table} VALUES {values}")


@pytest.fixture(scope="module")
def ch_session(tmp_path_factory):
    from chdb import session as chs

    s = chs.Session(str(tmp_path_factory.mktemp("chdb")))
    s.query("SET output_format_json_quote_64bit_integers = 0")
    s.query("SET output_format_json_quote_decimals = 0")
    ch_load(s.query, "shop")
    yield s
    s.cleanup() if hasattr(s, "cleanup") else s.close()


def chdb_rows(session, sql: str) -> list[dict]:
    out = session.query(sql, "JSONEachRow").bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _ch_parse(rows: list[dict], types: dict[str, str]) -> list[dict]:
    # JSON carries DateTime as text; the transform (and the reference) want times.
    return [{k: dt.datetime.fromisoformat(v) if types.get(k) == "DateTime" and isinstance(v, str) else v
             for k, v in r.items()} for r in rows]


@pytest.mark.parametrize("case", sorted(CASES))
def test_current_clickhouse_source_runs_each_field_in_the_extract(ch_session, case):
    spec = spec_for(case, "clickhouse", "shop.orders", "shop.customers",
                    target={"kind": "clickhouse", "table": "shop.out_rows"})
    out = generate_sql(spec, TYPES["clickhouse"]["orders"], {"shop.customers": TYPES["clickhouse"]["customers"]})
    extracted = chdb_rows(ch_session, out["extract_sql"])
    rows = finish(out, _ch_parse(extracted, dict(TYPES["clickhouse"]["orders"])))
    same_rows(spec, rows, reference(spec, {"orders": ORDERS, "customers": CUSTOMERS}, NOW))
    ch_session.query(out["target_ddl"])
    try:
        declared = [r["name"] for r in chdb_rows(ch_session, "DESCRIBE TABLE shop.out_rows")]
    finally:
        ch_session.query("DROP TABLE shop.out_rows")
    check_ddl_columns(out, rows, declared)


# --- DuckDB transform (file source: everything over `batch`) -------------------------------------------

def orders_batch(created_at_as_text: bool = False) -> pa.Table:
    rows = [{**r, "created_at": r["created_at"].isoformat() if created_at_as_text else r["created_at"]} for r in ORDERS]
    schema = pa.schema([("order_id", pa.int64()), ("customer_id", pa.int64()), ("status", pa.string()),
                        ("amount", pa.decimal128(12, 2)), ("note", pa.string()),
                        ("created_at", pa.string() if created_at_as_text else pa.timestamp("us"))])
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.mark.parametrize("case", sorted(set(CASES) - JOIN_CASES))
def test_file_source_runs_each_field_in_the_duckdb_transform(case):
    spec = spec_for(case, "file", target={"kind": "postgres", "table": "public.out_rows"})
    out = generate_sql(spec, TYPES["file"]["orders"])
    assert out["extract_sql"] is None and out["dialects"]["transform"] == "duckdb"
    with Transformer(out["transform_sql"]) as t:  # the executor's hardened DuckDB session
        rows = t(orders_batch()).to_pylist()
    same_rows(spec, rows, reference(spec, {"orders": ORDERS}, NOW))
    shape = output_shape(spec, TYPES["file"]["orders"])
    assert [n for n, _ in shape] == list(rows[0])
    assert needs_whole_input(spec) == bool(spec.get("aggregate") or spec.get("order_by") or spec.get("limit"))


@pytest.mark.parametrize("case", ["between_dates_whole_days", "within_last_days", "within_last_month"])
def test_file_times_read_as_text_filter_like_times(case):
    spec = spec_for(case, "file")
    columns = [(n, "string") if n == "created_at" else (n, t) for n, t in TYPES["file"]["orders"]]
    with Transformer(generate_sql(spec, columns)["transform_sql"]) as t:
        rows = t(orders_batch(created_at_as_text=True)).to_pylist()
    want = reference(spec, {"orders": ORDERS}, NOW)
    same_rows(spec, [{**r, "created_at": dt.datetime.fromisoformat(r["created_at"])} for r in rows], want)


def test_a_per_batch_top_n_is_flagged_and_a_whole_input_is_exact():
    spec = spec_for("select_order_limit_rename", "file")
    out = generate_sql(spec, TYPES["file"]["orders"])
    assert any("whole input" in n for n in out["notes"])
    table = orders_batch()
    with Transformer(out["transform_sql"]) as t:
        whole = t(table).to_pylist()
        per_batch = [r for b in table.to_batches(max_chunksize=4) for r in t(b).to_pylist()]
    same_rows(spec, whole, reference(spec, {"orders": ORDERS}, NOW))
    assert len(per_batch) > len(whole)  # why the executor must hand such a transform the whole input


# --- shape, grain, DDL and errors ------------------------------------------------------------------------

def test_output_shape_follows_joins_select_aggregate_rename_and_pii():
    pg, joins = TYPES["postgres"]["orders"], {"customers": TYPES["postgres"]["customers"]}
    shape = output_shape(spec_for("top_n_customers_by_revenue", "postgres"), pg, joins)
    assert [(n, t.kind) for n, t in shape] == [("customer", "string"), ("revenue", "decimal"), ("orders", "int64")]
    shape = output_shape(spec_for("inner_join_all_columns_filter_on_joined", "postgres"), pg, joins)
    assert [n for n, _ in shape] == [n for n, _ in pg] + ["name", "country", "c_status"]
    assert output_shape(spec_for("pii_after_rename", "postgres"), pg) == [("order_id", shape[0][1])]
    assert output_shape(spec_for("left_join_select", "postgres"), None) is None


def test_grain_is_the_period_and_dimensions_or_the_dedupe_key():
    assert grain(spec_for("top_n_customers_by_revenue", "postgres")) == ["customer"]
    assert grain(spec_for("aggregate_per_month_filtered", "postgres")) == ["month"]
    spec = {**spec_for("not_in", "postgres"), "cleaning": [{"op": "dedupe", "column": "order_id"}],
            "rename": {"order_id": "id"}}
    assert grain(spec) == ["id"]
    assert grain(spec_for("not_in", "postgres")) is None
    with_day = {**spec_for("not_in", "postgres"), "aggregate": {"period": "day", "time_column": "created_at",
                                                                "measures": [{"fn": "count", "alias": "n"}]}}
    assert grain(with_day, [("day", "date"), ("created_at", "timestamp")]) == ["day_agg"]


def test_clickhouse_target_ddl_follows_rename_and_keeps_merge_keys():
    spec = {**spec_for("select_order_limit_rename", "postgres"),
            "target": {"kind": "clickhouse", "table": "an.top", "load_mode": "merge", "keys": ["order_id"]}}
    ddl = generate_sql(spec, TYPES["postgres"]["orders"])["target_ddl"]
    assert "total Nullable(Decimal(12, 2))" in ddl and "order_id Int64" in ddl
    assert "ReplacingMergeTree ORDER BY (order_id)" in ddl


def test_unknown_columns_are_refused_with_the_real_ones():
    pg = TYPES["postgres"]["orders"]
    for extra in (dict(select=["order_id", "c.nope"], joins=[JOIN_C]), dict(select=["nope"]),
                  dict(rename={"nope": "x"}), dict(order_by=[{"column": "nope"}]),
                  dict(filters=[{"column": "z.name", "op": "=", "value": 1}])):
        spec = {"source": {"kind": "postgres", "table": "orders"}, "target": {"kind": "sqlite", "table": "t"},
                **extra}
        with pytest.raises(SqlGenerationError):
            generate_sql(spec, pg, {"customers": TYPES["postgres"]["customers"]})


def test_without_join_columns_a_join_needs_named_columns():
    spec = spec_for("inner_join_all_columns_filter_on_joined", "postgres")
    with pytest.raises(SqlGenerationError, match="join.columns"):
        generate_sql(spec, None)
    named = {**spec, "joins": [{**JOIN_C, "columns": ["name"]}]}
    sql = generate_sql(named, None)["extract_sql"]
    assert "orders.*" in sql and "c.name" in sql


def test_clickhouse_joins_one_table_per_query():
    spec = {**spec_for("left_join_select", "clickhouse"),
            "joins": [JOIN_C, {"table": "customers", "alias": "d", "on": ["customer_id"]}]}
    with pytest.raises(SqlGenerationError, match="one table per query"):
        generate_sql(spec, TYPES["clickhouse"]["orders"], {"customers": TYPES["clickhouse"]["customers"]})


def test_mermaid_draws_the_new_steps_in_order():
    spec = PipelineSpec.model_validate(spec_for("top_n_customers_by_revenue", "postgres"))
    text = render_mermaid({**spec.model_dump(), "filters": [
        {"column": "created_at", "op": "within_last", "value": "7 days"},
        {"column": "status", "op": "not_in", "value": ["cancelled"]}]})
    labels = [line.split('"')[1] for line in text.splitlines() if re.match(r'^\s*t\d+\["', line)]
    assert labels == ["inner join customers as c on customer_id",
                      "filter: created_at within last 7 days AND status not in (cancelled)",
                      "aggregate per name: sum(amount), count(*)", "top 2 by revenue desc", "rename name to customer"]
