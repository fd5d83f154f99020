"""Loading the demo data into the real PostgreSQL of the local stack (services.demo.load)."""
from __future__ import annotations

import csv
import uuid
from collections import defaultdict
from decimal import Decimal

import pytest

from services.core.settings import load_settings
from services.demo import shopdata
from services.demo.load import ensure_demo_data, load_into_postgres

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return shopdata.generate(tmp_path_factory.mktemp("shop"))  # the full 50,000 orders: COPY is quick


@pytest.fixture
def schema(settings):
    name = f"shop_{uuid.uuid4().hex[:6]}"
    yield name
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _count(settings, schema: str, table: str) -> int:
    with psycopg.connect(settings.postgres_dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]


def test_load_counts_types_and_idempotence(settings, data, schema):
    expected = {"customers": 3000, "orders": data["counts"]["orders"]}
    assert load_into_postgres(settings.postgres_dsn, data["dir"], schema) == expected
    assert load_into_postgres(settings.postgres_dsn, data["dir"], schema) == expected  # drop + create
    with psycopg.connect(settings.postgres_dsn) as conn:
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'orders'", (schema,)).fetchall())
        distinct_emails = conn.execute(f"SELECT count(DISTINCT lower(email)) FROM {schema}.customers").fetchone()[0]
    assert types == {"order_id": "bigint", "customer_id": "integer", "status": "text", "amount": "numeric",
                     "country": "text", "created_at": "timestamp without time zone",
                     "updated_at": "timestamp without time zone"}
    assert distinct_emails == 2700


def test_daily_paid_revenue_matches_the_csv(settings, data, schema):
    load_into_postgres(settings.postgres_dsn, data["dir"], schema)
    expected: dict[str, Decimal] = defaultdict(Decimal)
    with data["paths"]["orders"].open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            amount = Decimal(r["amount"])
            if r["status"] == "paid" and amount > 0:
                expected[r["created_at"][:10]] += amount
    with psycopg.connect(settings.postgres_dsn) as conn:
        rows = conn.execute(
            f"SELECT created_at::date, sum(amount) FROM {schema}.orders "
            "WHERE status = 'paid' AND amount > 0 GROUP BY 1 ORDER BY 1").fetchall()
    actual = {day.isoformat(): total for day, total in rows}
    assert len(actual) in (300, 301)  # every day of the 300-day span (its end minute is day 301) sells
    assert actual == dict(expected)


def test_ensure_demo_data_generates_and_loads_once(settings, schema, tmp_path):
    data_dir = tmp_path / "demo" / "shop_data"
    assert ensure_demo_data(settings, data_dir=data_dir, schema=schema) == data_dir
    assert all((data_dir / rel).is_file() for rel in shopdata.FILES.values())
    assert _count(settings, schema, "orders") == shopdata.DEFAULT_ORDERS
    with psycopg.connect(settings.postgres_dsn) as conn:
        conn.execute(f"DELETE FROM {schema}.orders WHERE order_id = 1")
    before = (data_dir / "orders.csv").stat().st_mtime_ns
    ensure_demo_data(settings, data_dir=data_dir, schema=schema)  # files present, table non-empty: no-op
    assert _count(settings, schema, "orders") == shopdata.DEFAULT_ORDERS - 1
    assert (data_dir / "orders.csv").stat().st_mtime_ns == before
    with psycopg.connect(settings.postgres_dsn) as conn:
        conn.execute(f"TRUNCATE {schema}.orders")
    ensure_demo_data(settings, data_dir=data_dir, schema=schema)  # empty table: loaded again
    assert _count(settings, schema, "orders") == shopdata.DEFAULT_ORDERS
