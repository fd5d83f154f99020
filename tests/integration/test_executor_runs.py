"""The executor worker on the real stack: RunRequested in, run events and rows out; retries; cancel."""
import uuid
from collections import defaultdict
from decimal import Decimal

import pytest
from clickhouse_driver import Client

from services.cli import demo_connections
from tests.harness import wait_for
from tests.pipelines import draft_and_deploy, drafting_deployment, send_commands, trigger


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "exec", ("executor",)) as d:
        yield d


def ch(settings) -> Client:
    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                  password=settings.clickhouse_password)


def run_events(dep, run_id: str) -> list:
    """Run events as logged on runs.events.v1 (read straight from Kafka, not from any read model)."""
    from services.core.avro import build_codec
    from services.core.eventlog import LogReader
    from services.core.messages import Message

    codec = build_codec(dep.settings.schema_registry_url)
    reader = LogReader(dep.settings, dep.topic("runs.events.v1"))
    try:
        out = []
        for rec in reader.read({}):
            name, record = codec.decode(rec.value)
            msg = Message.from_record(name, record)
            if msg.payload.get("run_id") == run_id:
                out.append(msg)
        return out
    finally:
        reader.close()


def finished(dep, run_id: str, timeout: float = 90) -> list:
    def done():
        evs = run_events(dep, run_id)
        return evs if evs and evs[-1].short_name in ("RunSucceeded", "RunCancelled") or (
            evs and evs[-1].short_name == "RunFailed" and evs[-1].payload["final"]) else None
    return wait_for(done, timeout=timeout, interval=0.5, what=f"run {run_id} to finish")


def test_a_manual_run_loads_the_p02_aggregate_into_clickhouse(dep):
    table = f"analytics.revenue_{uuid.uuid4().hex[:8]}"
    pid, spec = draft_and_deploy(dep, "Load only paid orders with a positive amount from PostgreSQL shop.orders "
                                      f"into ClickHouse {table}, summing amount per day")
    run_id = trigger(dep, pid)
    evs = finished(dep, run_id)
    kinds = [e.short_name for e in evs]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunSucceeded" and "BatchLoaded" in kinds, kinds
    done = evs[-1].payload
    assert done["rows_written"] == sum(e.payload["rows_written"] for e in evs if e.short_name == "BatchLoaded")
    expected = defaultdict(Decimal)
    import csv
    with open(dep.shop / "orders.csv", newline="") as f:
        for o in csv.DictReader(f):
            if o["status"] == "paid" and Decimal(o["amount"]) > 0:
                expected[o["created_at"][:10]] += Decimal(o["amount"])
    rows = ch(dep.settings).execute(f"SELECT * FROM {table}")
    got = {str(r[0]): Decimal(str(r[1])) for r in rows}
    assert got == dict(expected)
    assert done["rows_written"] == len(expected)


def test_a_retryable_failure_is_retried_with_backoff_and_then_succeeds(dep):
    table = f"analytics.retry_{uuid.uuid4().hex[:8]}"
    pid, spec = draft_and_deploy(dep, f"Load orders from the PostgreSQL table shop.orders into the ClickHouse "
                                      f"table {table}")
    # Break the target connection, run, and mend it while the executor backs off.
    good = next(c for c in demo_connections(dep.settings, dep.shop) if c["kind"] == "clickhouse")
    bad = {**good, "params": {**good["params"], "port": 1}}
    with dep.client() as c:
        assert c.delete(f"/api/v1/connections/{good['name']}").status_code == 204
        assert c.post("/api/v1/connections", json=bad).status_code == 201
        run_id = trigger(dep, pid)
        wait_for(lambda: any(e.short_name == "RunFailed" for e in run_events(dep, run_id)), timeout=60,
                 what="the first failed attempt")
        assert c.delete(f"/api/v1/connections/{good['name']}").status_code == 204
        assert c.post("/api/v1/connections", json=good).status_code == 201
    evs = finished(dep, run_id)
    failed = [e.payload for e in evs if e.short_name == "RunFailed"]
    assert failed and failed[0]["retryable"] and not failed[0]["final"], failed
    assert evs[-1].short_name == "RunSucceeded", [e.short_name for e in evs]
    starts = [e.payload["attempt"] for e in evs if e.short_name == "RunStarted"]
    assert starts == list(range(1, len(starts) + 1)) and len(starts) >= 2
    (count,), = ch(dep.settings).execute(f"SELECT count() FROM {table}")
    assert count == evs[-1].payload["rows_read"] > 0


def test_a_non_retryable_failure_ends_the_run_at_once(dep):
    pid, spec = draft_and_deploy(dep, "Load products.jsonl into the ClickHouse table "
                                      f"analytics.products_{uuid.uuid4().hex[:8]}")
    (dep.shop / spec["source"]["path"]).rename(dep.shop / "products.jsonl.away")
    try:
        run_id = trigger(dep, pid)
        evs = finished(dep, run_id)
    finally:
        (dep.shop / "products.jsonl.away").rename(dep.shop / spec["source"]["path"])
    last = evs[-1]
    assert last.short_name == "RunFailed" and last.payload["final"] and not last.payload["retryable"]
    assert [e.short_name for e in evs].count("RunStarted") == 1
    assert "products.jsonl" in last.payload["message"]


def test_a_cancelled_run_ends_cancelled_and_its_events_match_the_target(dep):
    table = f"analytics.cancel_{uuid.uuid4().hex[:8]}"
    pid, spec = draft_and_deploy(dep, f"Load orders from the PostgreSQL table shop.orders into the ClickHouse "
                                      f"table {table}")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    run = {"trigger_kind": "manual", "params_json": "{}", "slot": None}
    send_commands(dep, [("TriggerRun", pid, {**run, "run_id": first}), ("TriggerRun", pid, {**run, "run_id": second}),
                        ("CancelRun", pid, {"run_id": second, "reason": "not needed"})])
    assert finished(dep, first)[-1].short_name == "RunSucceeded"
    evs = finished(dep, second)
    assert evs[-1].short_name == "RunCancelled" and evs[-1].payload["reason"] == "not needed"
    # Cancellation takes effect at a batch boundary: whatever landed is on the log, nothing more.
    landed = sum(e.payload["rows_written"] for e in run_events(dep, first) + evs if e.short_name == "BatchLoaded")
    (count,), = ch(dep.settings).execute(f"SELECT count() FROM {table}")
    assert count == landed
