"""The streaming runner against the real Kafka, ClickHouse 18.16 and PostgreSQL.

Each test has its own topic, consumer group (pipeline id), ClickHouse database / PostgreSQL schema, all
removed afterwards. Runners run in a thread as the executor runs them; the tests wait (with timeouts) on
what the runner reports through its StreamEvents and on the target's rows.
"""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from datetime import datetime, timedelta

import pytest

from services.connectors.registry import Connection
from services.domain.deployments import Deployment
from services.domain.spec import PipelineSpec
from services.executor.streaming import StreamError, StreamRunner
from tests.integration.stack_fixtures import Registry, uid
from services.core.kafka_auth import client_conf

pytestmark = pytest.mark.integration
TENANT = "t-stream"
EMAIL_RE = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
MASK_SQL = ("SELECT event_id, CAST(ts AS TIMESTAMP) AS ts, page, "
            f"regexp_replace(user_email, '{EMAIL_RE}', '***', 'g') AS user_email FROM batch")


class Recorder:
    """StreamEvents that keeps everything; ``on_batch`` lets a test act from inside the runner."""

    def __init__(self, on_batch=None):
        self.batches: list[dict] = []
        self.lags: list[tuple[int, int]] = []
        self.logs: list[tuple[str, str]] = []
        self.on_batch = on_batch

    def batch_loaded(self, batch_no, rows_in, rows_written, nbytes, cursor, timings):
        if self.on_batch:
            self.on_batch(batch_no, rows_in)
        self.batches.append({"batch_no": batch_no, "rows_in": rows_in, "rows_written": rows_written,
                             "nbytes": nbytes, "cursor": json.loads(cursor), "timings": timings})

    def lag(self, lag, loaded_total):
        self.lags.append((lag, loaded_total))

    def log(self, level, message):
        self.logs.append((level, message))

    @property
    def rows_in(self) -> int:
        return sum(b["rows_in"] for b in self.batches)


class Running:
    """A runner in a thread, as the executor runs it; ``error`` is what ``run`` raised."""

    def __init__(self, runner: StreamRunner):
        self.runner, self.error = runner, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.runner.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def stop(self, timeout: float = 10.0) -> None:
        self.runner.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the runner did not stop"
        if self.error is not None:
            raise self.error


def wait_for(predicate, timeout: float, what: str, running: Running | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running is not None and running.error is not None:
            raise running.error
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# ---------------------------------------------------------------- stack fixtures

@pytest.fixture
def kafka_env(settings):
    """Makes topics (``topic(partitions)``) and names pipelines; topics and consumer groups go afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**client_conf(settings), "log_level": 3})
    topics, groups = [], []

    class Env:
        @staticmethod
        def topic(partitions: int = 1) -> str:
            name = f"st.clicks.{uid()}"
            admin.create_topics([NewTopic(name, partitions, 1)])[name].result(15)
            topics.append(name)
            return name

        @staticmethod
        def pipeline() -> str:
            pid = f"pl-{uid()}"
            groups.append(f"{settings.topic_prefix}stream.{pid}")
            return pid

    yield Env
    if groups:
        for f in admin.delete_consumer_groups(groups, request_timeout=15).values():
            try:
                f.result()
            except Exception:  # a group never joined does not exist
                pass
    for name in topics:
        admin.delete_topics([name])[name].result(15)


# ---------------------------------------------------------------- data and deployments

def clicks(first_id: int, n: int, seed: int = 7) -> list[dict]:
    """Click events shaped like services/demo/shopdata.py's clicks.jsonl (e-mails to mask included)."""
    rnd = random.Random(seed + first_id)
    t = datetime(2026, 11, 1) + timedelta(seconds=first_id)
    out = []
    for i in range(first_id, first_id + n):
        t += timedelta(milliseconds=rnd.randint(1, 400))
        out.append({"event_id": i, "ts": t.isoformat(), "page": f"/p/{rnd.randint(1, 500)}",
                    "user_email": f"user{rnd.randint(1, 2700)}@example.com"})
    return out


def produce(settings, topic: str, rows: list, key=lambda r: str(r["event_id"])) -> None:
    from confluent_kafka import Producer

    p = Producer({**client_conf(settings), "linger.ms": 20})
    for r in rows:
        value = r if isinstance(r, (bytes, type(None))) else json.dumps(r).encode()
        p.produce(topic, value, key=None if key is None else key(r).encode())
        p.poll(0)
    assert p.flush(30) == 0


def deployment(pid: str, topic: str, target: dict, *, rows: int = 1000, seconds: float = 1.0,
               message_format: str = "json", **artifacts) -> Deployment:
    spec = PipelineSpec.model_validate({
        "source": {"kind": "kafka", "connection": "kf", "topic": topic, "message_format": message_format},
        "target": target,
        "streaming": {"enabled": True, "max_batch_rows": rows, "max_batch_seconds": seconds}}).model_dump()
    return Deployment(pipeline_id=pid, tenant_id=TENANT, version=1,
                      artifacts={"spec_json": json.dumps(spec), **artifacts})


def runner(settings, dep: Deployment, registry, events, run_id: str = "run-1", stop=None, **kw) -> StreamRunner:
    return StreamRunner(settings, dep, registry, run_id=run_id, events=events, stop=stop or threading.Event(), **kw)


def ends(settings, topic: str) -> dict[str, int]:
    """{partition: high watermark}."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**client_conf(settings), "group.id": f"st-probe-{uid()}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {str(p): c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in sorted(parts)}
    finally:
        c.close()


def committed(settings, pid: str, topic: str) -> dict[str, int]:
    """The stream group's committed offsets ({partition: offset}, -1001 when none); reads, never joins."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**client_conf(settings), "group.id": f"{settings.topic_prefix}stream.{pid}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        got = c.committed([TopicPartition(topic, p) for p in sorted(parts)], timeout=10)
        return {str(tp.partition): tp.offset for tp in got}
    finally:
        c.close()


def done(offsets: dict) -> int:
    """Messages before the committed offsets (no commit: none)."""
    return sum(max(0, o) for o in offsets.values())


def ch_clicks_ddl(db: str, engine: str = "MergeTree") -> str:
    return (f"CREATE TABLE IF NOT EXISTS {db}.clicks (event_id UInt64, ts DateTime, page String, "
            f"user_email String) ENGINE = {engine} ORDER BY event_id")


# ---------------------------------------------------------------- tests

def test_20000_clicks_masked_into_clickhouse_once_in_bounded_batches(settings, kafka, ch, chdb, kafka_env):
    client, db = chdb
    topic, pid = kafka_env.topic(3), kafka_env.pipeline()
    dep = deployment(pid, topic, {"kind": "clickhouse", "connection": "ch", "table": f"{db}.clicks",
                                  "load_mode": "append"},
                     rows=1000, seconds=1.0, transform_sql=MASK_SQL, target_ddl=ch_clicks_ddl(db))
    rec = Recorder()
    produce(settings, topic, clicks(0, 10_000))  # before the start: read from the earliest offset
    run = Running(runner(settings, dep, Registry(kafka, ch), rec))
    try:
        produce(settings, topic, clicks(10_000, 10_000))
        wait_for(lambda: rec.rows_in >= 20_000, 180, "20,000 events loaded", run)
        count, distinct, emails = client.execute(
            f"SELECT count(), uniqExact(event_id), countIf(match(user_email, '@')) FROM {db}.clicks")[0]
        assert (count, distinct, emails) == (20_000, 20_000, 0)
        assert client.execute(f"SELECT groupUniqArray(user_email) FROM {db}.clicks")[0][0] == ["***"]
        assert max(b["rows_in"] for b in rec.batches) <= 1000
        assert sum(b["rows_written"] for b in rec.batches) == 20_000
        assert [b["batch_no"] for b in rec.batches] == list(range(len(rec.batches)))
        assert rec.batches[-1]["cursor"] == ends(settings, topic)
        assert all(set(b["timings"]) == {"extract_ms", "transform_ms", "load_ms"} for b in rec.batches)

        # the time bound flushes a tail far below max_batch_rows
        before = len(rec.batches)
        produce(settings, topic, clicks(20_000, 5))
        wait_for(lambda: rec.rows_in >= 20_005, 30, "the 5-message tail loaded", run)
        assert sum(b["rows_in"] for b in rec.batches[before:]) == 5
        assert client.execute(f"SELECT count(), uniqExact(event_id) FROM {db}.clicks")[0] == (20_005, 20_005)
    finally:
        run.stop()
    assert committed(settings, pid, topic) == ends(settings, topic)


@pytest.mark.parametrize("engine", ["clickhouse", "postgres"])
def test_resume_after_crash_and_restart_every_event_once_on_a_merge_target(settings, kafka, ch, pg, chdb, pgdb,
                                                                          kafka_env, engine):
    topic, pid = kafka_env.topic(2), kafka_env.pipeline()
    if engine == "clickhouse":
        client, db = chdb
        table, conn = f"{db}.clicks", ch
        ddl = ch_clicks_ddl(db, "ReplacingMergeTree")
        count = lambda: client.execute(f"SELECT count(), uniqExact(event_id) FROM {table} FINAL")[0]  # noqa: E731
        loaded_keys = lambda run_id: client.execute(  # noqa: E731
            f"SELECT count() FROM {db}.aietl_loaded_batches WHERE batch_key LIKE %(k)s", {"k": run_id + ":%"})[0][0]
    else:
        pdb, schema = pgdb
        table, conn = f"{schema}.clicks", pg
        ddl = (f"CREATE TABLE IF NOT EXISTS {table} (event_id bigint PRIMARY KEY, ts timestamp, page text, "
               "user_email text)")
        count = lambda: pdb.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {table}").fetchone()  # noqa: E731
        loaded_keys = lambda run_id: pdb.execute(  # noqa: E731
            "SELECT count(*) FROM aietl_meta.loaded_batches WHERE target = %s AND batch_key LIKE %s",
            (table, run_id + ":%")).fetchone()[0]
    target = {"kind": engine, "connection": conn.name, "table": table, "load_mode": "merge", "keys": ["event_id"]}
    registry = Registry(kafka, conn)
    produce(settings, topic, clicks(0, 3000))

    # 1. a crash after batch 2 is durably written but before its offsets are committed
    def crash(batch_no, rows_in):
        if batch_no == 2:
            raise RuntimeError("simulated crash between the write and the commit")

    first = Recorder(on_batch=crash)
    run = Running(runner(settings, deployment(pid, topic, target, rows=500, transform_sql=MASK_SQL, target_ddl=ddl),
                         registry, first, run_id="run-a"))
    run.thread.join(120)
    assert isinstance(run.error, RuntimeError) and first.rows_in == 1000
    assert done(committed(settings, pid, topic)) == 1000

    # 2. restarted (new run id, other batch bounds: the crashed range is cut differently), stopped mid-way
    produce(settings, topic, clicks(3000, 2000))
    second_stop = threading.Event()
    second = Recorder(on_batch=lambda no, rows: second_stop.set() if no >= 2 else None)
    run = Running(runner(settings, deployment(pid, topic, target, rows=700, transform_sql=MASK_SQL, target_ddl=ddl),
                         registry, second, run_id="run-b", stop=second_stop))
    run.thread.join(120)
    assert not run.thread.is_alive() and run.error is None
    assert len(second.batches) == 3 and done(committed(settings, pid, topic)) == 1000 + second.rows_in

    # 3. more events while stopped; a third runner catches up
    produce(settings, topic, clicks(5000, 1000))
    third = Recorder()
    run = Running(runner(settings, deployment(pid, topic, target, rows=700, transform_sql=MASK_SQL, target_ddl=ddl),
                         registry, third, run_id="run-c", first_batch_no=3))
    try:
        wait_for(lambda: third.rows_in >= 6000 - 1000 - second.rows_in, 120, "the rest loaded", run)
    finally:
        run.stop()
    # the committed part was never read twice; the crashed batch was written (its key is recorded), read
    # again, cut differently, written again, and collapsed by key
    assert first.rows_in + second.rows_in + third.rows_in == 6000
    assert sum(b["rows_written"] for b in second.batches + third.batches) == 5000
    assert loaded_keys("run-a") == 3
    assert third.batches[0]["batch_no"] == 3
    assert tuple(count()) == (6000, 6000)
    assert committed(settings, pid, topic) == ends(settings, topic)


def test_two_runners_of_one_deployment_share_the_partitions(settings, kafka, ch, chdb, kafka_env):
    """Two executors running the same stream split its partitions (a rebalance drops what the revoked
    partitions had buffered; their new owner re-reads it from the commit)."""
    client, db = chdb
    topic, pid = kafka_env.topic(2), kafka_env.pipeline()
    dep = deployment(pid, topic, {"kind": "clickhouse", "connection": "ch", "table": f"{db}.clicks",
                                  "load_mode": "merge", "keys": ["event_id"]}, rows=300,
                     transform_sql=MASK_SQL, target_ddl=ch_clicks_ddl(db, "ReplacingMergeTree"))
    recs = [Recorder(), Recorder()]
    assigned = lambda rec: [m for _, m in rec.logs if m.startswith("assigned partitions")]  # noqa: E731
    runs = [Running(runner(settings, dep, Registry(kafka, ch), recs[0], run_id="run-1"))]
    try:
        wait_for(lambda: assigned(recs[0]), 30, "the first runner assigned")
        produce(settings, topic, clicks(0, 2000))
        runs.append(Running(runner(settings, dep, Registry(kafka, ch), recs[1], run_id="run-2")))
        wait_for(lambda: assigned(recs[1]), 60, "the second runner assigned", runs[1])
        assert assigned(recs[1])[-1] in ("assigned partitions [0] of " + topic, "assigned partitions [1] of " + topic)
        produce(settings, topic, clicks(2000, 2000))
        wait_for(lambda: client.execute(f"SELECT uniqExact(event_id) FROM {db}.clicks")[0][0] == 4000, 120,
                 "4,000 events loaded", runs[1])
    finally:
        for run in runs:
            run.stop()
    assert recs[1].rows_in > 0
    assert client.execute(f"SELECT count() FROM {db}.clicks FINAL")[0][0] == 4000
    assert committed(settings, pid, topic) == ends(settings, topic)


def test_lag_is_positive_while_behind_and_zero_when_caught_up(settings, kafka, ch, chdb, kafka_env):
    client, db = chdb
    topic, pid = kafka_env.topic(1), kafka_env.pipeline()
    produce(settings, topic, clicks(0, 3000))
    rec = Recorder()
    dep = deployment(pid, topic, {"kind": "clickhouse", "connection": "ch", "table": f"{db}.clicks",
                                  "load_mode": "append"}, rows=200, transform_sql=MASK_SQL,
                     target_ddl=ch_clicks_ddl(db))
    run = Running(runner(settings, dep, Registry(kafka, ch), rec))
    try:
        wait_for(lambda: rec.rows_in >= 3000, 120, "3,000 events loaded", run)
        wait_for(lambda: rec.lags and rec.lags[-1] == (0, 3000), 30, "a lag of 0 once caught up", run)
    finally:
        run.stop()
    assert rec.lags[0][0] > 0 and max(lag for lag, _ in rec.lags) >= 2800 - 200
    behind = [lag for lag, total in rec.lags if total < 3000]
    assert behind and all(lag > 0 for lag in behind)
    assert client.execute(f"SELECT count() FROM {db}.clicks")[0][0] == 3000


def test_replace_mode_is_refused_at_construction(settings, kafka, ch):
    dep = deployment("pl-x", "st.none", {"kind": "clickhouse", "connection": "ch", "table": "x.t",
                                         "load_mode": "replace"})
    with pytest.raises(StreamError, match="replace"):
        runner(settings, dep, Registry(kafka, ch), Recorder())


def test_transform_error_on_data_is_raised_and_nothing_committed(settings, kafka, ch, chdb, kafka_env):
    from services.executor.transform import TransformError

    _, db = chdb
    topic, pid = kafka_env.topic(1), kafka_env.pipeline()
    produce(settings, topic, clicks(0, 10))
    dep = deployment(pid, topic, {"kind": "clickhouse", "connection": "ch", "table": f"{db}.t"},
                     transform_sql="SELECT CAST(page AS INTEGER) AS n FROM batch")
    rec = Recorder()
    run = Running(runner(settings, dep, Registry(kafka, ch), rec))
    run.thread.join(60)
    assert not run.thread.is_alive() and isinstance(run.error, TransformError)
    assert rec.batches == [] and committed(settings, pid, topic) == {"0": -1001}


def _refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more: connections are refused
    return port


def test_unreachable_target_is_retried_with_warnings_and_stop_is_prompt(settings, kafka, kafka_env):
    topic, pid = kafka_env.topic(1), kafka_env.pipeline()
    produce(settings, topic, clicks(0, 10))
    down = Connection(TENANT, "ch", "clickhouse", {"host": "127.0.0.1", "port": _refused_port(),
                                                   "connect_timeout": 1})
    dep = deployment(pid, topic, {"kind": "clickhouse", "connection": "ch", "table": "st_none.t"})
    rec = Recorder()
    run = Running(runner(settings, dep, Registry(kafka, down), rec))
    wait_for(lambda: sum(1 for lv, m in rec.logs if lv == "WARNING" and "writing batch 0" in m) >= 2, 30,
             "two warnings of a retried write", run)
    assert any("retrying in 2 s" in m for _, m in rec.logs)  # backing off: 1 s, then 2 s
    t0 = time.monotonic()
    run.stop(timeout=5)
    assert time.monotonic() - t0 < 5
    assert rec.batches == [] and committed(settings, pid, topic) == {"0": -1001}


def avro_record():
    """(codec, a schema of ours every field of which has a default or is a string, a record of it)."""
    from services.core.avro import build_codec

    codec = build_codec()
    schema = next(s for s in codec.catalog if s.parsed.get("type") == "record" and all(
        "default" in f or f["type"] == "string" for f in s.parsed["fields"]))
    return codec, schema, {f["name"]: f.get("default", "x") for f in schema.parsed["fields"]}


def test_avro_messages_and_tombstones_into_a_file_target(settings, kafka, kafka_env, tmp_path):
    codec, schema, record = avro_record()
    topic, pid = kafka_env.topic(1), kafka_env.pipeline()
    produce(settings, topic, [codec.encode(schema.name, record)] * 3 + [None], key=None)
    files = Connection(TENANT, "fs", "file", {"folder": str(tmp_path)})
    dep = deployment(pid, topic, {"kind": "file", "connection": "fs", "path": "out.jsonl"}, rows=2,
                     message_format="avro")
    rec = Recorder()
    run = Running(runner(settings, dep, Registry(kafka, files), rec))
    try:
        wait_for(lambda: committed(settings, pid, topic) == {"0": 4}, 30, "all 4 offsets committed", run)
    finally:
        run.stop()
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 3 and set(json.loads(lines[0])) == set(record)
    assert [b["rows_in"] for b in rec.batches] == [2, 1]  # the tombstone moved the offset, added no row


def test_a_poison_message_goes_to_the_dlq_and_the_stream_goes_on(settings, kafka, kafka_env, tmp_path):
    from confluent_kafka.admin import AdminClient, NewTopic

    from services.core.eventlog import read_all

    codec, schema, record = avro_record()
    good = codec.encode(schema.name, record)
    topic, pid = kafka_env.topic(1), kafka_env.pipeline()
    admin = AdminClient({**client_conf(settings), "log_level": 3})
    admin.create_topics([NewTopic(topic + ".dlq", 1, 1)])[topic + ".dlq"].result(15)
    try:
        produce(settings, topic, [good, good, b"\x00not avro at all", good], key=None)
        files = Connection(TENANT, "fs", "file", {"folder": str(tmp_path)})
        dep = deployment(pid, topic, {"kind": "file", "connection": "fs", "path": "out.jsonl"}, rows=10,
                         message_format="avro")
        rec = Recorder()
        run = Running(runner(settings, dep, Registry(kafka, files), rec))
        try:
            wait_for(lambda: committed(settings, pid, topic) == {"0": 4}, 30, "all 4 offsets committed", run)
            produce(settings, topic, [good], key=None)  # and it goes on after the poison
            wait_for(lambda: committed(settings, pid, topic) == {"0": 5}, 30, "the next message committed", run)
        finally:
            run.stop()
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        assert len(lines) == 4 and set(json.loads(lines[0])) == set(record)
        letters = []
        read_all(settings, topic + ".dlq", letters.append)
        assert len(letters) == 1 and letters[0].value == b"\x00not avro at all"
        h = {k: v.decode() for k, v in letters[0].headers}
        assert h["source_topic"] == topic and h["source_offset"] == "2" and h["error_class"] == "StreamError"
        assert any("poison message" in m and level == "WARNING" for level, m in rec.logs), rec.logs
    finally:
        admin.delete_topics([topic + ".dlq"])[topic + ".dlq"].result(15)
