"""The metrics-sink on the real stack: run events and metrics produced to the deployment's topics end up in
the ClickHouse analytics tables (and the hourly roll-up), and offsets are committed only after the insert.

Every deployment shares the ClickHouse database of the settings, so queries filter on a fresh pipeline id;
the sink is at-least-once, so they count distinct event ids / batch and log sequence numbers.
"""
from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from services.processes import group_assignments
from tests.harness import new_deployment, wait_for
from tests.integration.test_projector_runs import Events, produce

pytestmark = pytest.mark.integration


def clickhouse(settings):
    from clickhouse_driver import Client

    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                  password=settings.clickhouse_password, database=settings.clickhouse_database)


def committed(dep, logical_topic: str) -> int:
    """Offsets the sink's consumer group has committed on a topic, summed over partitions (read outside the
    group: this consumer never subscribes, so it causes no rebalance)."""
    from confluent_kafka import TopicPartition

    from services.core.kafka import consumer

    name = dep.topic(logical_topic)
    c = consumer(dep.settings, group_id=f"{dep.settings.topic_prefix}metrics-sink")
    try:
        partitions = c.list_topics(name, timeout=10).topics[name].partitions
        return sum(max(tp.offset, 0) for tp in c.committed([TopicPartition(name, p) for p in partitions], timeout=10))
    finally:
        c.close()


def run_history(ev: Events) -> tuple[list, list]:
    """A run retried then succeeded, one failed for good, one cancelled; plus batch, log and lag metrics."""
    runs = [ev("RunStarted", 0, run_id="ok", version=2, attempt=1),
            ev("BatchLoaded", 1, run_id="ok", batch_no=0),
            ev("RunFailed", 2, run_id="ok", error_class="OperationalError", message="connection refused",
               retryable=True, attempt=1, final=False),
            ev("RunStarted", 3, run_id="ok", version=2, attempt=2),
            ev("RunSucceeded", 8, run_id="ok", rows_read=1500, rows_written=1490, bytes=52000, batches=2,
               high_water_mark="c2", duration_ms=5000, version=2, trigger_kind="cron"),
            ev("RunStarted", 10, run_id="bad", version=2),
            ev("RunFailed", 11, run_id="bad", error_class="ProgrammingError", message="no such table",
               retryable=False, attempt=1, final=True),
            ev("RunStarted", 20, run_id="stop", version=2),
            ev("RunCancelled", 21, run_id="stop", reason="cancelled by user:ann")]
    metrics = [ev("BatchMeasured", 4, run_id="ok", batch_no=0, rows_in=1000, rows_out=990, bytes=40000,
                  extract_ms=12, transform_ms=3, load_ms=40, cursor="c1"),
               ev("BatchMeasured", 6, run_id="ok", batch_no=1, rows_in=500, rows_out=500, bytes=12000,
                  extract_ms=5, transform_ms=1, load_ms=9, cursor=None),
               ev("RunLogged", 4, run_id="ok", seq=1, level="INFO", message="batch 0 loaded: 990 rows", batch_no=0),
               ev("RunLogged", 6, run_id="ok", seq=2, level="WARNING", message="batch 1 slow", batch_no=1),
               ev("StreamLagMeasured", 22, run_id="s1", topic="shop.clicks", lag=250, loaded_total=19750),
               ev("StreamLagMeasured", 23, run_id="s1", topic="shop.clicks", lag=0, loaded_total=20000)]
    return runs, metrics


def test_run_events_and_metrics_land_in_the_analytics_tables(stack_settings):
    dep = new_deployment(stack_settings, "sink", ["metrics-sink"]).start()
    ch = clickhouse(dep.settings)
    ev = Events(dep.settings.tenant_id)
    q = {"pid": ev.pid}
    try:
        runs, metrics = run_history(ev)
        produce(dep, "runs.events.v1", runs)
        produce(dep, "metrics.v1", metrics)

        def landed():
            counts = [ch.execute(f"SELECT uniqExact({key}) FROM {table} WHERE pipeline_id = %(pid)s", q)[0][0]
                      for table, key in (("pipeline_runs", "event_id"), ("run_batches", "batch_seq"),
                                         ("execution_logs", "seq"), ("stream_lag", "event_id"))]
            return counts == [8, 2, 2, 2] or None
        wait_for(landed, timeout=60, interval=0.5, what="rows of every table")

        by_status = dict(ch.execute("SELECT status, uniqExact(event_id) FROM pipeline_runs WHERE pipeline_id = "
                                    "%(pid)s GROUP BY status", q))
        assert by_status == {"started": 4, "retrying": 1, "succeeded": 1, "failed": 1, "cancelled": 1}
        [ok] = ch.execute("SELECT run_id, pipeline_version, rows_read, rows_written, bytes_read, batches, "
                          "duration_ms, toUnixTimestamp(started_at), toUnixTimestamp(finished_at), "
                          "toUnixTimestamp(ts), tenant_id, event_id FROM pipeline_runs "
                          "WHERE pipeline_id = %(pid)s AND status = 'succeeded' LIMIT 1", q)
        end = int((ev.t0 + timedelta(seconds=8)).timestamp())
        assert ok == ("ok", 2, 1500, 1490, 52000, 2, 5000, end - 5, end, end, ev.tenant, runs[4].message_id)
        assert ch.execute("SELECT trigger_kind FROM pipeline_runs WHERE pipeline_id = %(pid)s AND "
                          "status = 'succeeded'", q) == [("cron",)]
        assert ch.execute("SELECT DISTINCT pipeline_version FROM pipeline_runs WHERE pipeline_id = %(pid)s "
                          "AND status = 'started'", q) == [(2,)]
        assert dict(ch.execute("SELECT status, any(error) FROM pipeline_runs WHERE pipeline_id = %(pid)s AND "
                               "error != '' GROUP BY status", q)) == {
            "retrying": "OperationalError: connection refused", "failed": "ProgrammingError: no such table",
            "cancelled": "cancelled by user:ann"}

        assert ch.execute("SELECT batch_seq, any(rows_in), any(rows_out), any(bytes), any(extract_ms), "
                          "any(transform_ms), any(load_ms), any(duration_ms), any(cursor_value) FROM run_batches "
                          "WHERE pipeline_id = %(pid)s GROUP BY batch_seq ORDER BY batch_seq", q) == [
            (0, 1000, 990, 40000, 12, 3, 40, 55, "c1"), (1, 500, 500, 12000, 5, 1, 9, 15, "")]
        assert ch.execute("SELECT seq, any(level), any(message), any(batch_seq), any(component) FROM execution_logs "
                          "WHERE pipeline_id = %(pid)s GROUP BY seq ORDER BY seq", q) == [
            (1, "INFO", "batch 0 loaded: 990 rows", 0, "service:test"), (2, "WARNING", "batch 1 slow", 1,
                                                                        "service:test")]
        assert ch.execute("SELECT run_id, topic, lag, loaded_total FROM stream_lag FINAL WHERE pipeline_id = "
                          "%(pid)s ORDER BY ts", q) == [("s1", "shop.clicks", 250, 19750), ("s1", "shop.clicks", 0,
                                                                                             20000)]

        # The materialized view rolls the same rows up by hour (SummingMergeTree: always sum ... GROUP BY).
        raw = dict(ch.execute("SELECT status, count() FROM pipeline_runs WHERE pipeline_id = %(pid)s "
                              "GROUP BY status", q))
        hourly = {s: (n, rows) for s, n, rows in ch.execute(
            "SELECT status, sum(runs), sum(total_rows_read) FROM pipeline_runs_hourly WHERE pipeline_id = %(pid)s "
            "GROUP BY status", q)}
        assert {s: n for s, (n, _) in hourly.items()} == raw
        assert hourly["succeeded"][1] == 1500 * raw["succeeded"]
    finally:
        ch.disconnect()
        dep.stop()


def test_offsets_are_committed_only_after_the_rows_are_in_clickhouse(stack_settings):
    dep = new_deployment(stack_settings, "sinkcommit", []).start()
    ch = clickhouse(dep.settings)
    ev = Events(dep.settings.tenant_id)
    try:
        # A database that does not exist: every insert fails, as when ClickHouse is down.
        dep.start_worker("metrics-sink", clickhouse_database=f"missing_{uuid.uuid4().hex[:8]}")
        wait_for(lambda: group_assignments(dep.settings, "metrics-sink"), timeout=60, what="the sink's group")
        runs, metrics = run_history(ev)
        produce(dep, "runs.events.v1", runs)
        produce(dep, "metrics.v1", metrics)
        wait_for(lambda: "failed, retrying" in dep.log("metrics-sink"), timeout=30, what="a failing insert")
        time.sleep(3)  # several commit intervals (1 s)
        assert committed(dep, "runs.events.v1") == 0 and committed(dep, "metrics.v1") == 0
        dep.stop()  # stopped while retrying: still nothing may be committed
        assert committed(dep, "runs.events.v1") == 0 and committed(dep, "metrics.v1") == 0

        dep.start_worker("metrics-sink")  # the right database: the same events are consumed again and stored
        wait_for(lambda: ch.execute("SELECT uniqExact(event_id) FROM pipeline_runs WHERE pipeline_id = %(pid)s",
                                    {"pid": ev.pid})[0][0] == len(runs) - 1, timeout=60, what="rows after restart")
        wait_for(lambda: committed(dep, "runs.events.v1") == len(runs)
                 and committed(dep, "metrics.v1") == len(metrics), timeout=30, what="offsets committed")
    finally:
        ch.disconnect()
        dep.stop()
