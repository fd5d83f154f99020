"""A canary secret planted in a connection and used by a full draft -> deploy -> run is found nowhere
(issue 9, item 5): not in any topic of the deployment (raw bytes, LLM requests and replies included), the
Redis read model, the platform's ClickHouse tables, nor the workers' logs.

The canary is the password of a PostgreSQL role made for this test, so the run can only succeed by using
it: the secret really travels through the executor, and the scan proves it went no further.
"""
from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
from clickhouse_driver import Client

from tests.support.pg_admin import superuser
from tests.harness import new_deployment, wait_for
from services.core.kafka_auth import client_conf

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def canary():
    return f"CanaryPw{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def canary_role(stack_settings, canary):
    from services.demo.load import ensure_demo_data

    ensure_demo_data(stack_settings)
    role = f"canary_{uuid.uuid4().hex[:10]}"
    with superuser(stack_settings) as db:  # a login role: the server's administrator makes it
        db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{canary}'")
        db.execute(f'GRANT CONNECT ON DATABASE "{stack_settings.postgres_db}" TO {role}')
        db.execute(f"GRANT USAGE ON SCHEMA shop TO {role}")
        db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA shop TO {role}")
    yield role
    with superuser(stack_settings) as db:
        db.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA shop FROM {role}")
        db.execute(f"REVOKE ALL ON SCHEMA shop FROM {role}")
        db.execute(f'REVOKE ALL ON DATABASE "{stack_settings.postgres_db}" FROM {role}')
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


@pytest.fixture(scope="module")
def deployment(stack_settings):
    from services.runtime import WORKERS

    dep = new_deployment(stack_settings, "canary", list(WORKERS)).start()
    yield dep
    dep.remove()


def _ch(s) -> Client:
    return Client(host=s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                  password=s.clickhouse_password)


@pytest.fixture(scope="module")
def ran(deployment, canary_role, canary):
    """Registers the canary connection, drafts, deploys and runs one pipeline; returns the run's state."""
    s = deployment.settings
    table = f"analytics.canary_{uuid.uuid4().hex[:8]}"
    connections = [
        {"name": "warehouse-pg", "kind": "postgres", "params": {"host": s.postgres_host, "port": s.postgres_port,
         "database": s.postgres_db, "user": canary_role}, "secrets": {"password": canary}},
        {"name": "analytics-ch", "kind": "clickhouse", "params": {"host": s.clickhouse_host,
         "port": s.clickhouse_port, "user": s.clickhouse_user}, "secrets": {"password": s.clickhouse_password}},
    ]
    text = f"Load orders from the PostgreSQL table shop.orders into the ClickHouse table {table}"
    with deployment.client() as c:
        for conn in connections:
            r = c.post("/api/v1/connections", json=conn)
            assert r.status_code == 201, r.text
            assert canary not in r.text
        assert c.post("/api/v1/connections/warehouse-pg/test").json()["ok"] is True
        pid = c.post("/api/v1/pipelines", json={"description": text}).json()["pipeline_id"]
        state = wait_for(lambda: _terminal(c, pid), timeout=120, interval=0.3, what="the draft")
        assert state["status"] == "draft_ready", json.dumps(state)[:2000]
        r = c.post(f"/api/v1/pipelines/{pid}/deploy", json={})
        assert r.status_code == 200, r.text
        r = c.post(f"/api/v1/pipelines/{pid}/runs", json={"params": {}})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        run = wait_for(lambda: _finished(c, run_id), timeout=180, interval=0.3, what="the run")
    yield {"run": run, "pid": pid, "table": table}
    _ch(s).execute(f"DROP TABLE IF EXISTS {table}")


def _terminal(c, pid):
    r = c.get(f"/api/v1/pipelines/{pid}")
    if r.status_code == 200 and r.json()["status"] in ("draft_ready", "draft_failed", "needs_clarification",
                                                       "refused"):
        return r.json()
    return None


def _finished(c, run_id):
    r = c.get(f"/api/v1/runs/{run_id}")
    return r.json() if r.status_code == 200 and r.json()["status"] in ("succeeded", "failed", "cancelled") else None


def test_the_run_used_the_canary(ran, deployment):
    assert ran["run"]["status"] == "succeeded", json.dumps(ran["run"])[:2000]
    assert _ch(deployment.settings).execute(f"SELECT count() FROM {ran['table']}")[0][0] == ran["run"]["rows_written"] > 0


def test_the_canary_is_in_no_topic_of_the_deployment(ran, deployment, canary):
    from confluent_kafka import Consumer, TopicPartition

    s = deployment.settings
    consumer = Consumer({**client_conf(s), "group.id": f"canary-scan-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    needle, control, scanned, found, seen_control = canary.encode(), ran["table"].encode(), 0, [], 0
    try:
        topics = [t for t in consumer.list_topics(timeout=10).topics if t.startswith(s.topic_prefix)]
        assert any("pipelines.events" in t for t in topics) and any("llm" in t for t in topics), topics
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, p, low)])
                offset, deadline = low, time.monotonic() + 60
                while offset < high and time.monotonic() < deadline:
                    for msg in consumer.consume(500, timeout=1.0):
                        if msg.error():
                            continue
                        offset = msg.offset() + 1
                        scanned += 1
                        raw = b"".join(filter(None, [msg.key(), msg.value(),
                                                     *(v for _, v in (msg.headers() or []) if v)]))
                        if needle in raw:
                            found.append(f"{topic}[{p}]@{msg.offset()}")
                        seen_control += control in raw
                assert offset >= high, f"could not read {topic}[{p}] to its end"
    finally:
        consumer.close()
    print(f"scanned {scanned} messages in {len(topics)} topics")
    # The control (the request's unique table name) proves the scan reads where the pipeline's words went.
    assert scanned > 0 and seen_control > 0 and found == []


def test_the_canary_is_not_in_redis(ran, deployment, canary):
    import redis

    r = redis.Redis.from_url(deployment.settings.redis_url)
    found, seen, control = [], 0, 0
    for key in r.scan_iter(count=1000):
        seen += 1
        kind = r.type(key)
        if kind == b"string":
            values = [r.get(key) or b""]
        elif kind == b"hash":
            values = [b"".join(k + v for k, v in r.hgetall(key).items())]
        elif kind == b"list":
            values = r.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(r.smembers(key))
        elif kind == b"zset":
            values = [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            values = [json.dumps({k.decode(errors="replace"): v.decode(errors="replace") for k, v in f.items()}).encode()
                      for _, f in r.xrange(key)]
        else:
            values = []
        if canary.encode() in key or any(canary.encode() in v for v in values):
            found.append(key)
        control += any(ran["pid"].encode() in v for v in values)
    print(f"scanned {seen} Redis keys")
    assert seen > 0 and control > 0 and found == []


def test_the_canary_is_not_in_the_platform_clickhouse_tables(ran, deployment, canary):
    s = deployment.settings
    client = _ch(s)
    columns = client.execute("SELECT table, name FROM system.columns WHERE database = %(db)s "
                             "AND type LIKE '%%String%%'", {"db": s.clickhouse_database})
    tables = sorted({t for t, _ in columns})
    assert {"llm_calls", "pipeline_runs"} & set(tables), tables
    found, control = [], 0
    for table, column in columns:
        hits, ours = client.execute(f"SELECT countIf(position(toString(`{column}`), %(c)s) > 0), "
                                    f"countIf(position(toString(`{column}`), %(p)s) > 0) "
                                    f"FROM {s.clickhouse_database}.`{table}`", {"c": canary, "p": ran["pid"]})[0]
        control += ours
        if hits:
            found.append(f"{table}.{column}")
    print(f"scanned {len(columns)} String columns of {len(tables)} tables")
    assert control > 0 and found == []  # control: the run's rows name its pipeline


def test_the_canary_is_not_in_the_logs_nor_the_api(ran, deployment, canary):
    from services.processes import run_dir

    logs = list(run_dir(deployment.settings).glob("*"))
    assert logs
    found = [p.name for p in logs if p.is_file() and canary.encode() in p.read_bytes()]
    assert found == []
    with deployment.client() as c:
        for path in ("/api/v1/connections", "/api/v1/connections/warehouse-pg", f"/api/v1/pipelines/{ran['pid']}",
                     f"/api/v1/pipelines/{ran['pid']}/events", f"/api/v1/runs/{ran['run']['run_id']}"):
            r = c.get(path)
            assert r.status_code == 200 and canary not in r.text, path
