"""The demo data generator (services.demo.shopdata): deterministic bytes and the quirks the cases rely on."""
from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from services.demo import shopdata

N_ORDERS = 2000  # small for speed; every other file has a fixed size
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]+$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("shop")
    return shopdata.generate(out, orders=N_ORDERS)


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_same_seed_gives_identical_bytes(generated, tmp_path):
    again = shopdata.generate(tmp_path / "again", orders=N_ORDERS)
    for kind, path in generated["paths"].items():
        assert path.read_bytes() == again["paths"][kind].read_bytes(), kind
    assert again["counts"] == generated["counts"]


def test_other_seed_changes_the_data(generated, tmp_path):
    other = shopdata.generate(tmp_path / "other", orders=N_ORDERS, seed=1)
    assert other["paths"]["orders"].read_bytes() != generated["paths"]["orders"].read_bytes()


def test_result_lists_every_file_and_count(generated):
    paths, counts = generated["paths"], generated["counts"]
    assert {p.relative_to(generated["dir"]).as_posix() for p in paths.values()} == {
        "customers.csv", "orders.csv", "products.jsonl", "clicks.jsonl", "landing/batch_0001.csv", "shop.sql"}
    assert all(p.is_file() for p in paths.values())
    assert counts == {"customers": 3000, "orders": N_ORDERS, "products": 500, "clicks": 20000, "landing": 1000}


def test_customers_have_the_dirty_bits(generated):
    path = generated["paths"]["customers"]
    with path.open(newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["customer_id", "name", "email", "phone", "city", "country"]
    rows = _csv_rows(path)
    assert len(rows) == 3000
    assert len({r["customer_id"] for r in rows}) == 3000
    emails = [r["email"] for r in rows]
    assert len({e.lower() for e in emails}) == 2700  # 300 duplicates by lower(email)
    assert len(set(emails)) > 2700  # some duplicates differ only by case
    assert any(e != e.lower() for e in emails)
    assert any(r["city"] == "" for r in rows)
    assert all(re.fullmatch(r"\+7\d{10}", r["phone"]) for r in rows)
    assert {r["country"] for r in rows} <= set(shopdata.COUNTRIES)


def test_orders_statuses_amounts_and_times(generated):
    path = generated["paths"]["orders"]
    with path.open(newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["order_id", "customer_id", "status", "amount", "country",
                                       "created_at", "updated_at"]
    rows = _csv_rows(path)
    assert len(rows) == N_ORDERS
    assert [int(r["order_id"]) for r in rows] == list(range(1, N_ORDERS + 1))
    statuses = {r["status"] for r in rows}
    assert statuses == {"paid", "pending", "refunded", "cancelled"}
    paid_share = sum(r["status"] == "paid" for r in rows) / len(rows)
    assert 0.4 < paid_share < 0.6  # paid is weighted x3 of six
    amounts = [Decimal(r["amount"]) for r in rows]
    assert all(a == a.quantize(Decimal("0.01")) for a in amounts)  # numeric(12,2)-safe
    negatives = sum(a < 0 for a in amounts)
    assert 0 < negatives < len(rows) * 0.05  # a few, not many
    assert all(1 <= int(r["customer_id"]) <= 3000 for r in rows)
    start, end = datetime(2026, 1, 1), datetime(2026, 10, 28)  # 300 days
    for r in rows:
        created = datetime.fromisoformat(r["created_at"])
        updated = datetime.fromisoformat(r["updated_at"])
        assert start <= created <= end
        assert updated >= created


def test_products_jsonl(generated):
    products = _jsonl(generated["paths"]["products"])
    assert len(products) == 500
    assert len({p["sku"] for p in products}) == 500
    for p in products:
        assert set(p) == {"sku", "title", "price", "tags"}
        assert isinstance(p["price"], float) and 1 <= p["price"] <= 900
        assert isinstance(p["tags"], list) and len(p["tags"]) == 2 and len(set(p["tags"])) == 2


def test_clicks_jsonl_carry_email_addresses(generated):
    clicks = _jsonl(generated["paths"]["clicks"])
    assert len(clicks) == 20000
    assert [c["event_id"] for c in clicks] == list(range(20000))
    assert all(set(c) == {"event_id", "ts", "page", "user_email"} for c in clicks)
    assert all(EMAIL_RE.match(c["user_email"]) for c in clicks)
    ts = [datetime.fromisoformat(c["ts"]) for c in clicks]
    assert all(a < b for a, b in zip(ts, ts[1:]))


def test_landing_batch(generated):
    rows = _csv_rows(generated["paths"]["landing"])
    assert len(rows) == 1000
    assert set(rows[0]) == {"sensor", "ts", "value"}
    assert {r["sensor"] for r in rows} == {f"s{i}" for i in range(10)}
    assert all(0 <= float(r["value"]) < 1 for r in rows)


def test_shop_sql_ddl(generated):
    sql = generated["paths"]["sql"].read_text(encoding="utf-8")
    assert "CREATE SCHEMA IF NOT EXISTS shop;" in sql
    assert ("CREATE TABLE shop.orders (order_id bigint PRIMARY KEY, customer_id int, status text, "
            "amount numeric(12,2), country text, created_at timestamp, updated_at timestamp);") in sql
    assert ("CREATE TABLE shop.customers (customer_id int PRIMARY KEY, name text, email text, phone text, "
            "city text, country text);") in sql
    assert "\\copy shop.orders FROM 'orders.csv' WITH (FORMAT csv, HEADER true)" in sql


def test_schema_name_is_validated():
    assert shopdata.ddl_statements("shop_ab12cd")[0] == "CREATE SCHEMA IF NOT EXISTS shop_ab12cd"
    for bad in ("Shop", "shop; drop table x", "", "1shop", "a" * 64):
        with pytest.raises(ValueError):
            shopdata.check_schema_name(bad)


def test_cli_writes_the_same_files(generated, tmp_path):
    assert shopdata.main([str(tmp_path / "cli"), "--orders", str(N_ORDERS)]) == 0
    for kind, path in generated["paths"].items():
        assert (tmp_path / "cli" / shopdata.FILES[kind]).read_bytes() == path.read_bytes(), kind
