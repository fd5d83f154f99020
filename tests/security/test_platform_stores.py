"""The platform's own stores are never a source or target: every platform topic, the ClickHouse database,
the PostgreSQL schema; refused at QA and again by the executor, before anything is read or written."""
from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
from urllib.parse import urlparse

from services.connectors.guards import PlatformStoreError, PlatformStores, check_pipeline_stores
from services.connectors.registry import Connection
from tests.integration.stack_fixtures import Registry, ch, kafka, pg, settings  # noqa: F401
from services.core.kafka_auth import client_conf

TENANT = "t-security"
STORES = PlatformStores(topic_prefix="t0sec-x.", clickhouse_database="aietl")
PG_SOURCE = {"kind": "postgres", "connection": "pg", "table": "shop.orders"}
CH_TARGET = {"kind": "clickhouse", "connection": "ch", "table": "analytics.orders"}


def platform_topics(prefix: str) -> list[str]:
    from topology.model import load_topology

    return [prefix + name for name in load_topology().all_topics()]


def problems(spec: dict, artifacts: dict | None = None, resolve=None) -> list[str]:
    try:
        check_pipeline_stores(spec, artifacts, STORES, resolve)
    except PlatformStoreError as e:
        return e.problems
    return []


# ---------------------------------------------------------------- Kafka topics


@pytest.mark.parametrize("topic", platform_topics(STORES.topic_prefix))
def test_each_platform_topic_is_neither_source_nor_target_nor_trigger(topic):
    as_target = {"source": PG_SOURCE, "target": {"kind": "kafka", "connection": "kf", "topic": topic}}
    as_source = {"source": {"kind": "kafka", "connection": "kf", "topic": topic}, "target": CH_TARGET}
    as_trigger = {"source": PG_SOURCE, "target": CH_TARGET, "trigger": {"kind": "kafka", "topic": topic}}
    for spec, role in ((as_target, "target"), (as_source, "source"), (as_trigger, "trigger")):
        found = problems(spec)
        assert found and f"the {role} Kafka topic {topic!r}" in found[0], (role, found)


@pytest.mark.parametrize("topic", ["aietl.pipelines.events.v1", "aietl.pipelines.commands.v1.dlq",
                                   "tabc-e2e.runs.events.v1", "__consumer_offsets", "__transaction_state",
                                   "t0sec-x.executor-__assignor-__leader", "aietl.llm.replies.v1"])
def test_other_deployments_and_internal_topics_are_refused(topic):
    spec = {"source": PG_SOURCE, "target": {"kind": "kafka", "connection": "kf", "topic": topic}}
    assert problems(spec)


@pytest.mark.parametrize("topic", ["shop.clicks", "kt-1a2b.orders", "orders", "events.v1", "pipelines"])
def test_user_topics_pass(topic):
    assert problems({"source": {"kind": "kafka", "connection": "kf", "topic": topic}, "target": CH_TARGET}) == []


def _broker_stores(settings, shared: tuple = ()) -> PlatformStores:  # noqa: F811
    return PlatformStores.of(settings.model_copy(update={"kafka_shared_topics": ",".join(shared)}))


def _on(bootstrap: str):
    return lambda kind, name: Connection(TENANT, name or "kf", kind, {"bootstrap": bootstrap}, {})


@pytest.mark.parametrize("role", ["source", "target"])
def test_a_topic_of_the_platform_broker_is_a_pipelines_only_when_shared(settings, role):  # noqa: F811
    """Another tenant's data topic on the platform's broker ('billing.invoices') is refused, whatever name
    the connection gives the broker (localhost, 127.0.0.2); shared by an admin, it passes; a topic of another
    broker is not the platform's business."""
    from services.agents.qa.store_rules import check_platform_stores
    from services.connectors.guards import platform_store_problems

    port = settings.kafka_bootstrap.split(",")[0].rpartition(":")[2]
    kafka_end = {"kind": "kafka", "connection": "kf", "topic": "billing.invoices"}
    spec = {"source": kafka_end, "target": CH_TARGET} if role == "source" else {"source": PG_SOURCE, "target": kafka_end}
    for bootstrap in (settings.kafka_bootstrap, f"localhost:{port}", f"127.0.0.2:{port}"):
        [problem] = platform_store_problems(spec, {}, _broker_stores(settings), _on(bootstrap))
        assert "not shared" in problem and "AIETL_KAFKA_SHARED_TOPICS" in problem and role in problem
    assert platform_store_problems(spec, {}, _broker_stores(settings, ("billing.*",)), _on(f"localhost:{port}")) == []
    assert platform_store_problems(spec, {}, _broker_stores(settings), _on("127.0.0.1:1")) == []
    # QA sees where the connection points too (it resolves the tenant's connections)
    [finding] = check_platform_stores(spec, {}, settings.model_copy(update={"kafka_shared_topics": None}),
                                      _on(settings.kafka_bootstrap))
    assert finding.is_error and "not shared" in finding.message


def test_sharing_never_opens_the_platforms_own_topics(settings):  # noqa: F811
    from services.connectors.guards import platform_store_problems

    commands = settings.topic("pipelines.commands.v1")
    spec = {"source": {"kind": "kafka", "connection": "kf", "topic": commands}, "target": CH_TARGET}
    [problem] = platform_store_problems(spec, {}, _broker_stores(settings, ("*",)), _on(settings.kafka_bootstrap))
    assert "platform's topic prefix" in problem


# ---------------------------------------------------------------- ClickHouse database and PostgreSQL schema


@pytest.mark.parametrize("table", ["aietl.pipeline_runs", "aietl.stolen", "`aietl`.`x`", "system.users",
                                   "analytics.aietl_loaded_batches", "analytics.aietl_batch_intents",
                                   "analytics.orders__staging", "AIETL.x"])
def test_platform_clickhouse_tables_are_refused(table):
    assert problems({"source": PG_SOURCE, "target": dict(CH_TARGET, table=table)})
    assert problems({"source": dict(CH_TARGET, table=table), "target": PG_SOURCE})


def test_a_bare_clickhouse_name_lands_in_the_connections_database():
    conn = Connection(TENANT, "ch", "clickhouse", {"host": "127.0.0.1", "database": "aietl"})
    spec = {"source": PG_SOURCE, "target": dict(CH_TARGET, table="stolen")}
    assert problems(spec, resolve=lambda kind, name: conn)
    other = Connection(TENANT, "ch", "clickhouse", {"host": "127.0.0.1", "database": "analytics"})
    assert problems(spec, resolve=lambda kind, name: other) == []


@pytest.mark.parametrize("table", ["aietl_meta.aietl_connections", "aietl_meta.loaded_batches", "aietl_meta.stolen",
                                   '"aietl_meta".x', "AIETL_META.x", "pg_catalog.pg_authid", "pg_authid",
                                   "information_schema.tables", "aietl.aietl_meta.x"])
def test_platform_postgres_tables_are_refused(table):
    target = {"kind": "postgres", "connection": "pg", "table": table}
    assert problems({"source": CH_TARGET, "target": target})
    assert problems({"source": target, "target": CH_TARGET})


def test_sql_artifacts_are_checked_too():
    spec = {"source": PG_SOURCE, "target": CH_TARGET}
    extract = "SELECT o.* FROM shop.orders o JOIN aietl_meta.aietl_connections c ON true"
    assert "aietl_meta" in problems(spec, {"extract_sql": extract})[0]
    ddl = "CREATE TABLE aietl.orders (id UInt64) ENGINE = MergeTree ORDER BY id"
    assert problems(spec, {"target_ddl": ddl})
    assert problems(spec, {"target_setup_sql": ["INSERT INTO analytics.orders SELECT * FROM system.users"]})
    assert problems(spec, {"extract_sql": "SELECT * FROM shop.orders", "target_ddl":
                           "CREATE TABLE IF NOT EXISTS analytics.orders (id UInt64) ENGINE = MergeTree ORDER BY id"}) == []


def test_qa_reports_platform_stores_as_findings(settings):  # noqa: F811
    from services.agents.qa.store_rules import check_platform_stores

    spec = {"source": PG_SOURCE, "target": {"kind": "kafka", "connection": "kf",
                                            "topic": settings.topic("pipelines.events.v1")}}
    [finding] = check_platform_stores(spec, {}, settings)
    assert finding.rule == "platform-store" and finding.is_error
    assert check_platform_stores({"source": PG_SOURCE, "target": CH_TARGET}, {}, settings) == []


def test_public_case_specs_pass_the_guard(settings):  # noqa: F811
    import yaml

    from services.understanding import compile_request
    from tests.security.corpus import CORPUS

    cases = yaml.safe_load((CORPUS.parents[1] / "fixtures" / "public_cases.yaml").read_text())["cases"]
    specs = [s for s in (compile_request(c["request"]).get("spec") for c in cases) if s]
    assert len(specs) >= 9
    for spec in specs:
        check_pipeline_stores(spec, {}, PlatformStores.of(settings))


# ---------------------------------------------------------------- the executor, against the real stack


def _executor(settings, *conns):  # noqa: F811
    from services.executor.app import Executor
    from services.executor.runbook import RunBook

    async def send(logical, msg):  # never reached: the guard runs before the data plane
        raise AssertionError(f"the executor produced {msg.name} while refusing a platform store")

    return Executor(settings, Registry(*conns), RunBook(), send, asyncio.new_event_loop())


def _run(executor, spec: dict, artifacts: dict | None = None):
    from services.executor.runbook import RunRecord

    run = RunRecord(run_id=str(uuid.uuid4()), pipeline_id=f"pl-{uuid.uuid4().hex[:8]}", tenant_id=TENANT, version=1)
    deployed = {"spec_json": json.dumps(spec), **(artifacts or {})}
    try:
        return executor._run_data_plane(run, deployed, None, threading.Event())
    finally:
        executor.loop.close()


@pytest.fixture
def deployment(settings):  # noqa: F811
    """A throwaway deployment prefix with the topology's topics (removed afterwards)."""
    from tests.harness import new_deployment, prepare_topics

    dep = new_deployment(settings, "sec", [])
    prepare_topics(dep.settings)
    yield dep
    dep.remove()


def _end_offsets(settings, topic: str) -> int:  # noqa: F811
    """Messages ever written to ``topic`` (a fresh topic may need a moment to elect its leaders)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from tests.harness import wait_for

    c = Consumer({**client_conf(settings), "group.id": f"sec-{uuid.uuid4().hex}"})

    def ends():
        try:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            return [sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)]
        except KafkaException:
            return None
    try:
        return wait_for(ends, timeout=30, what=f"leaders of {topic}")[0]
    finally:
        c.close()


def test_executor_refuses_to_load_into_the_log_of_record(deployment, pg, kafka):  # noqa: F811
    """The finding: 'Load shop.orders ... into the Kafka topic <prefix>pipelines.events.v1 where order_id = 1'."""
    s = deployment.settings
    log_topic = s.topic("pipelines.events.v1")
    before = _end_offsets(s, log_topic)
    spec = {"source": {"kind": "postgres", "connection": "pg", "table": "shop.orders"},
            "target": {"kind": "kafka", "connection": "kf", "topic": log_topic}}
    with pytest.raises(PlatformStoreError, match="platform's topic prefix"):
        _run(_executor(s, pg, kafka), spec, {"extract_sql": "SELECT * FROM shop.orders WHERE order_id = 1"})
    assert _end_offsets(s, log_topic) == before  # nothing reached the log


def test_executor_refuses_to_read_the_platform_commands(deployment, kafka, ch):  # noqa: F811
    s = deployment.settings
    spec = {"source": {"kind": "kafka", "connection": "kf", "topic": s.topic("pipelines.commands.v1")},
            "target": {"kind": "clickhouse", "connection": "ch", "table": "analytics.stolen_commands"}}
    with pytest.raises(PlatformStoreError):
        _run(_executor(s, kafka, ch), spec)


def test_executor_refuses_to_write_into_aietl_meta(settings, pg):  # noqa: F811
    import psycopg

    table = f"stolen_{uuid.uuid4().hex[:8]}"
    spec = {"source": {"kind": "postgres", "connection": "pg", "table": "shop.orders"},
            "target": {"kind": "postgres", "connection": "pg", "table": f"aietl_meta.{table}"}}
    with pytest.raises(PlatformStoreError, match="aietl_meta"):
        _run(_executor(settings, pg), spec)
    with psycopg.connect(settings.postgres_dsn) as db:
        assert db.execute("SELECT to_regclass(%s)", (f"aietl_meta.{table}",)).fetchone()[0] is None


def test_executor_refuses_the_platform_clickhouse_database(settings, pg, ch):  # noqa: F811
    from clickhouse_driver import Client

    table = f"stolen_{uuid.uuid4().hex[:8]}"
    spec = {"source": {"kind": "postgres", "connection": "pg", "table": "shop.orders"},
            "target": {"kind": "clickhouse", "connection": "ch", "table": f"{settings.clickhouse_database}.{table}"}}
    with pytest.raises(PlatformStoreError, match="platform's own ClickHouse database"):
        _run(_executor(settings, pg, ch), spec)
    client = Client(settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                    password=settings.clickhouse_password)
    try:
        assert client.execute("EXISTS TABLE {}.{}".format(settings.clickhouse_database, table)) == [(0,)]
    finally:
        client.disconnect()


# ---------------------------------------------------------------- the platform's servers through HTTP


@pytest.mark.parametrize("base", ["http://127.0.0.1:{ch_http}", "http://localhost:{ch_http}", "http://127.0.0.7:{ch_http}",
                                  "http://127.0.0.1:{pg}", "http://[::1]:{redis}", "http://0.0.0.0:{kafka}"])
def test_http_sources_at_platform_servers_are_refused(settings, base):  # noqa: F811
    url = base.format(ch_http=settings.clickhouse_http_port, pg=settings.postgres_port,
                     redis=urlparse(settings.redis_url).port or 6379,
                      kafka=settings.kafka_bootstrap.rsplit(":", 1)[1])
    conn = Connection(TENANT, "api", "http", {"base_url": url})
    spec = {"source": {"kind": "http", "connection": "api", "url": "/?query=SELECT+*+FROM+system.tables"},
            "target": CH_TARGET}
    with pytest.raises(PlatformStoreError, match="platform's own servers"):
        check_pipeline_stores(spec, {}, PlatformStores.of(settings), lambda kind, name: conn)
    absolute = dict(spec, source=dict(spec["source"], url=url + "/?query=SELECT+1"))
    with pytest.raises(PlatformStoreError):  # also at QA, where no connection is resolved
        check_pipeline_stores(absolute, {}, PlatformStores.of(settings))


def test_http_sources_elsewhere_pass(settings):  # noqa: F811
    conn = Connection(TENANT, "api", "http", {"base_url": "http://127.0.0.1:1"})  # a local API on another port
    spec = {"source": {"kind": "http", "connection": "api", "url": "/v1/orders"}, "target": CH_TARGET}
    check_pipeline_stores(spec, {}, PlatformStores.of(settings), lambda kind, name: conn)


def test_executor_refuses_an_http_source_at_clickhouse(settings, ch):  # noqa: F811
    api = Connection(TENANT, "api", "http", {"base_url": f"http://127.0.0.1:{settings.clickhouse_http_port}"})
    spec = {"source": {"kind": "http", "connection": "api", "url": "/?query=SELECT+name+FROM+system.tables"},
            "target": {"kind": "clickhouse", "connection": "ch", "table": "analytics.stolen_tables"}}
    with pytest.raises(PlatformStoreError):
        _run(_executor(settings, api, ch), spec)


def test_http_source_url_cannot_send_the_key_to_another_host():
    """A source URL naming another host gets nothing: a listener there proves no request arrived."""
    import http.server

    from services.executor.readers import ReaderError, read_http

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'[{"a": 1}]')

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.2", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = Connection(TENANT, "api", "http", {"base_url": "http://127.0.0.1:1"}, {"api_key": "canary-key"})
        with pytest.raises(ReaderError, match="leaves the connection's host"):
            list(read_http(conn, f"http://127.0.0.2:{server.server_port}/steal"))
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


def test_executor_refuses_deployed_sql_the_rules_refuse(settings, pg, ch):  # noqa: F811
    """The U& finding ran as the stack's superuser through READ ONLY: the executor checks the SQL again."""
    from services.agents.qa.sql_rules import UnsafeSqlError

    spec = {"source": {"kind": "postgres", "connection": "pg", "table": "shop.orders"},
            "target": {"kind": "clickhouse", "connection": "ch", "table": "analytics.stolen_files"}}
    with pytest.raises(UnsafeSqlError, match="pg_read_file"):
        _run(_executor(settings, pg, ch), spec, {"extract_sql": r"""SELECT U&"pg_r\0065ad_file"('/etc/hostname')"""})


# ---------------------------------------------------------------- refused when the connection is registered


@pytest.mark.parametrize("kind,params", [
    ("http", {"base_url": "http://127.0.0.1:{ch_http}/"}),
    ("http", {"base_url": "http://localhost:{pg}"}),
    ("clickhouse", {"host": "127.0.0.1", "database": "{ch_db}"}),
    ("clickhouse", {"host": "127.0.0.1", "database": "system"}),
    ("postgres", {"host": "127.0.0.1", "database": "aietl", "user": "u", "schema": "aietl_meta"}),
    ("postgres", {"host": "127.0.0.1", "database": "aietl", "user": "u", "schema": "pg_catalog"}),
])
def test_a_connection_naming_a_platform_store_is_refused_at_registration(settings, kind, params):  # noqa: F811
    from services.connectors.registry import InvalidConnection, build_registry

    params = {k: v.format(ch_http=settings.clickhouse_http_port, pg=settings.postgres_port,
                          ch_db=settings.clickhouse_database) for k, v in params.items()}
    registry, tenant = build_registry(settings), f"t-sec-reg-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InvalidConnection, match="platform|system"):
        registry.create(tenant, "bad", kind, params)
    assert registry.list(tenant) == []  # nothing stored


def test_connections_elsewhere_register(settings):  # noqa: F811
    from services.connectors.registry import build_registry

    registry, tenant = build_registry(settings), f"t-sec-reg-{uuid.uuid4().hex[:8]}"
    try:
        registry.create(tenant, "api", "http", {"base_url": "http://127.0.0.1:1/"})  # another local port
        registry.create(tenant, "wh", "clickhouse", {"host": "127.0.0.1", "database": "analytics"})
        assert sorted(c["name"] for c in registry.list(tenant)) == ["api", "wh"]
    finally:
        for name in ("api", "wh"):
            try:
                registry.delete(tenant, name)
            except Exception:  # noqa: BLE001 - not created
                pass
