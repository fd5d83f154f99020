"""Deterministic generator of the demo shop data set (standard library only).

Files written into ``out_dir``:

* ``customers.csv``  3,000 customers; ~300 duplicate e-mails (every 7th upper-cased), empty cities,
  Russian phone numbers (``+7`` and ten digits);
* ``orders.csv``     ``orders`` rows: status (paid x3, pending, refunded, cancelled), amount in [-5, 500]
  (so a few are negative), country, created_at over 300 days from 2026-01-01, updated_at >= created_at;
* ``products.jsonl`` 500 products: sku, title, price, tags (a list of 2);
* ``clicks.jsonl``   20,000 click events: event_id, ts, page, user_email (addresses the stream case masks);
* ``landing/batch_0001.csv`` 1,000 sensor readings: sensor, ts, value (the webhook case's file);
* ``shop.sql``       DDL for schema ``shop`` plus psql ``\\copy`` lines (run with ``psql -f`` from ``out_dir``).

The same arguments always give the same bytes: every random draw comes from one ``random.Random(seed)``
consumed in a fixed order, so anything (tests, acceptance cases) can recompute expectations from the files.

CLI: ``python -m services.demo.shopdata OUT_DIR [--orders N] [--seed S]``.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional, Sequence

DEFAULT_ORDERS = 50_000
DEFAULT_SEED = 20261124

N_CUSTOMERS = 3_000
N_DISTINCT_EMAILS = 2_700  # customers i and i+2700 share an address -> 300 duplicates
N_PRODUCTS = 500
N_CLICKS = 20_000
N_LANDING = 1_000

COUNTRIES = ["RU", "DE", "US", "FR", "KZ", "BR", "IN", "JP"]
CITIES = ["Moscow", "Berlin", "Austin", "Lyon", "Almaty", "Recife", "Pune", "Osaka", ""]  # "" = missing
STATUSES = ["paid", "paid", "paid", "pending", "refunded", "cancelled"]  # paid is three times as likely
TAGS = ["new", "sale", "eco", "gift", "bulk"]

START = datetime(2026, 1, 1)
ORDER_SPAN_MINUTES = 60 * 24 * 300
MAX_UPDATE_LAG_MINUTES = 600
CLICKS_START = datetime(2026, 11, 1)

CUSTOMER_COLUMNS = ["customer_id", "name", "email", "phone", "city", "country"]
ORDER_COLUMNS = ["order_id", "customer_id", "status", "amount", "country", "created_at", "updated_at"]

# Column types of the PostgreSQL tables, in file-column order (the COPY loads rely on that order).
TABLES: dict[str, list[tuple[str, str]]] = {
    "customers": [("customer_id", "int PRIMARY KEY"), ("name", "text"), ("email", "text"),
                  ("phone", "text"), ("city", "text"), ("country", "text")],
    "orders": [("order_id", "bigint PRIMARY KEY"), ("customer_id", "int"), ("status", "text"),
               ("amount", "numeric(12,2)"), ("country", "text"), ("created_at", "timestamp"),
               ("updated_at", "timestamp")],
}

FILES = {
    "customers": "customers.csv",
    "orders": "orders.csv",
    "products": "products.jsonl",
    "clicks": "clicks.jsonl",
    "landing": "landing/batch_0001.csv",
    "sql": "shop.sql",
}

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a plain lower-case identifier; it is spliced into DDL text unquoted."""
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: expected [a-z_][a-z0-9_]*, at most 63 chars")
    return schema


def ddl_statements(schema: str = "shop") -> list[str]:
    """DROP + CREATE statements for the demo tables in ``schema`` (orders first: nothing references it)."""
    s = check_schema_name(schema)
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {s}",
             f"DROP TABLE IF EXISTS {s}.orders", f"DROP TABLE IF EXISTS {s}.customers"]
    for table in ("customers", "orders"):
        cols = ", ".join(f"{name} {type_}" for name, type_ in TABLES[table])
        stmts.append(f"CREATE TABLE {s}.{table} ({cols})")
    return stmts


def shop_sql(schema: str = "shop") -> str:
    """The ``shop.sql`` script: the DDL plus psql ``\\copy`` meta-commands for the two CSV files."""
    lines = [stmt + ";" for stmt in ddl_statements(schema)]
    lines += [f"\\copy {schema}.{table} FROM '{FILES[table]}' WITH (FORMAT csv, HEADER true)"
              for table in ("customers", "orders")]
    return "\n".join(lines) + "\n"


def _csv_writer(f):
    # Explicit dialect pieces so the bytes never depend on csv module defaults changing.
    return csv.writer(f, delimiter=",", quotechar='"', lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)


def _write_customers(path: Path, rnd: random.Random) -> int:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = _csv_writer(f)
        w.writerow(CUSTOMER_COLUMNS)
        for i in range(1, N_CUSTOMERS + 1):
            base = f"user{i % N_DISTINCT_EMAILS}@example.com"
            email = base.upper() if i % 7 == 0 else base  # mixed case: dedup must lower() first
            phone = "+7" + "".join(str(rnd.randint(0, 9)) for _ in range(10))
            w.writerow([i, f"Customer {i}", email, phone, rnd.choice(CITIES), rnd.choice(COUNTRIES)])
    return N_CUSTOMERS


def _write_orders(path: Path, rnd: random.Random, n_orders: int) -> int:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = _csv_writer(f)
        w.writerow(ORDER_COLUMNS)
        for i in range(1, n_orders + 1):
            created = START + timedelta(minutes=rnd.randint(0, ORDER_SPAN_MINUTES))
            updated = created + timedelta(minutes=rnd.randint(0, MAX_UPDATE_LAG_MINUTES))
            amount = round(rnd.uniform(-5, 500), 2)  # ~1% negative on purpose (filters must drop them)
            w.writerow([i, rnd.randint(1, N_CUSTOMERS), rnd.choice(STATUSES), f"{amount:.2f}",
                        rnd.choice(COUNTRIES), created.isoformat(sep=" "), updated.isoformat(sep=" ")])
    return n_orders


def _write_products(path: Path, rnd: random.Random) -> int:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for i in range(1, N_PRODUCTS + 1):
            f.write(json.dumps({"sku": f"SKU-{i:05d}", "title": f"Product {i}",
                                "price": round(rnd.uniform(1, 900), 2),
                                "tags": rnd.sample(TAGS, 2)}) + "\n")
    return N_PRODUCTS


def _write_clicks(path: Path, rnd: random.Random) -> int:
    t = CLICKS_START
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for i in range(N_CLICKS):
            t += timedelta(milliseconds=rnd.randint(1, 400))  # strictly increasing timestamps
            f.write(json.dumps({"event_id": i, "ts": t.isoformat(), "page": f"/p/{rnd.randint(1, N_PRODUCTS)}",
                                "user_email": f"user{rnd.randint(1, N_DISTINCT_EMAILS)}@example.com"}) + "\n")
    return N_CLICKS


def _write_landing(path: Path, rnd: random.Random) -> int:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = _csv_writer(f)
        w.writerow(["sensor", "ts", "value"])
        for i in range(N_LANDING):
            w.writerow([f"s{i % 10}", (START + timedelta(seconds=i)).isoformat(sep=" "), round(rnd.random(), 4)])
    return N_LANDING


def generate(out_dir: Path, orders: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED) -> dict:
    """Write the demo data set into ``out_dir`` (created if needed; existing files are overwritten).

    Returns ``{"dir": out_dir, "paths": {kind: Path}, "counts": {kind: rows}}`` with kinds customers,
    orders, products, clicks, landing (and ``paths["sql"]`` for shop.sql).
    """
    if orders < 0:
        raise ValueError("orders must be >= 0")
    out_dir = Path(out_dir)
    paths = {kind: out_dir / rel for kind, rel in FILES.items()}
    paths["landing"].parent.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    # The draw order below is part of the output: changing it changes every file after that point.
    counts = {
        "customers": _write_customers(paths["customers"], rnd),
        "orders": _write_orders(paths["orders"], rnd, orders),
        "products": _write_products(paths["products"], rnd),
        "clicks": _write_clicks(paths["clicks"], rnd),
        "landing": _write_landing(paths["landing"], rnd),
    }
    paths["sql"].write_text(shop_sql("shop"), encoding="utf-8")
    return {"dir": out_dir, "paths": paths, "counts": counts}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.demo.shopdata",
                                     description="Write the deterministic demo shop data set.")
    parser.add_argument("out_dir", nargs="?", default="shop_data", type=Path)
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    result = generate(args.out_dir, orders=args.orders, seed=args.seed)
    counts = ", ".join(f"{k}={v}" for k, v in result["counts"].items())
    print(f"wrote demo data to {result['dir']} ({counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
