"""The platform's own stores are never a pipeline's source or target (docs/SECURITY.md, "Platform stores").

Whatever a connection says, a pipeline may not read or write:

- PostgreSQL: the schema ``aietl_meta`` (connection registry, exactly-once bookkeeping) nor the system
  catalogs (``pg_*``, ``information_schema``), on any server: the writers keep ``aietl_meta`` in every
  PostgreSQL target too;
- ClickHouse: the platform's database (``settings.clickhouse_database``), ``system``, and the writers'
  bookkeeping tables (``aietl_loaded_batches``, ``aietl_batch_intents``) in any database;
- Kafka: every topic under the platform's topic prefix, any topic named like a topology topic of another
  deployment on the broker (``<prefix>pipelines.events.v1``, its ``.dlq``), Faust's internal topics and
  Kafka's own (``__consumer_offsets``);
- the platform's servers through an HTTP source: an ``http`` connection (or an absolute source URL)
  pointing at the host and port of its ClickHouse (native or HTTP), PostgreSQL, Redis, Kafka or gateway,
  e.g. ``http://127.0.0.1:8123/?query=SELECT * FROM system.tables``; no other connection kind reaches Redis.

Names are matched regardless of host: ``localhost``, ``127.0.0.1`` and a DNS alias are the same server,
and the platform cannot prove they are not. One rule, :func:`check_pipeline_stores`, is called by the
qa-validator (services/agents/qa/store_rules.py) and again by the executor before every run; a
connection whose own params already name a platform store is refused when it is registered
(:func:`connection_store_problems`), so it never reaches a draft.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Optional

from services.connectors.registry import SCHEMA as PLATFORM_PG_SCHEMA

PG_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})
CH_SYSTEM_DATABASES = frozenset({"system", "information_schema"})
KAFKA_INTERNAL_MARKERS = ("__assignor", "-__leader")  # Faust's per-app internal topics

Resolve = Callable[[str, Optional[str]], object]  # (kind, connection name) -> Connection


class PlatformStoreError(ValueError):
    """A pipeline names one of the platform's own stores as its source or target."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class PlatformStores:
    """What belongs to this deployment; built from its settings."""

    topic_prefix: str
    clickhouse_database: str
    postgres_schema: str = PLATFORM_PG_SCHEMA
    endpoints: frozenset = field(default_factory=frozenset)  # (host, port) of the platform's servers
    brokers: frozenset = field(default_factory=frozenset)  # (host, port) of the platform's Kafka brokers
    shared_topics: tuple = ()  # fnmatch patterns of the platform broker's topics an admin shared

    def shares(self, topic: str) -> bool:
        import fnmatch

        return any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.shared_topics)

    @classmethod
    def of(cls, settings) -> "PlatformStores":
        shared = tuple(t.strip() for t in str(getattr(settings, "kafka_shared_topics", None) or "").split(",")
                       if t.strip())
        return cls(topic_prefix=settings.topic_prefix, clickhouse_database=settings.clickhouse_database,
                   endpoints=frozenset(_platform_endpoints(settings)), brokers=frozenset(_brokers(settings)),
                   shared_topics=shared)


def _brokers(settings) -> list[tuple[str, int]]:
    out = []
    for broker in str(settings.kafka_bootstrap).split(","):
        host, _, port = broker.strip().rpartition(":")
        if port.isdigit():
            out.append((host or "127.0.0.1", int(port)))
    return out


def _platform_endpoints(settings) -> list[tuple[str, int]]:
    from urllib.parse import urlsplit

    out = [(settings.clickhouse_host, settings.clickhouse_port), (settings.clickhouse_host,
            settings.clickhouse_http_port), (settings.postgres_host, settings.postgres_port),
           (settings.gateway_host, settings.gateway_port)]
    redis = urlsplit(settings.redis_url)
    out.append((redis.hostname or "127.0.0.1", redis.port or 6379))
    for host, port in _brokers(settings):
        out += [(host, port), (host, int(settings.kafka_controller_port))]
    return out


def check_pipeline_stores(spec: dict, artifacts: Optional[dict], stores: PlatformStores,
                          resolve: Optional[Resolve] = None) -> None:
    """Raises PlatformStoreError naming every platform store the spec or its SQL reads or writes."""
    problems = platform_store_problems(spec, artifacts, stores, resolve)
    if problems:
        raise PlatformStoreError(problems)


def platform_store_problems(spec: dict, artifacts: Optional[dict], stores: PlatformStores,
                            resolve: Optional[Resolve] = None) -> list[str]:
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump()
    artifacts = artifacts or {}
    source, target = spec.get("source") or {}, spec.get("target") or {}
    trigger = spec.get("trigger") or {}
    problems: list[str] = []
    for role, end in (("source", source), ("target", target)):
        problems += _endpoint_problems(role, end, stores, resolve)
    if trigger.get("kind") == "kafka" and trigger.get("topic"):
        problems += _topic_problems("trigger", trigger["topic"], stores)
    sql = [("source", source, q) for q in (artifacts.get("extract_sql"), artifacts.get("extract_sql_initial"),
                                           source.get("query")) if q]
    sql += [("target", target, q) for q in [*(artifacts.get("target_setup_sql") or []), artifacts.get("target_ddl")]
            if q]
    for role, end, text in sql:
        problems += _sql_problems(role, end, text, stores, resolve)
    return list(dict.fromkeys(problems))


def connection_store_problems(kind: str, params: dict, stores: PlatformStores) -> list[str]:
    """What a connection's params alone point at among the platform's stores (checked at registration).

    Only what the params name for certain: an HTTP base URL at one of the platform's servers, a
    ClickHouse default database that is the platform's or ``system``, a PostgreSQL ``schema`` param that
    is ``aietl_meta`` or a system catalog. A connection to the platform's PostgreSQL or ClickHouse server
    itself is legitimate (users' data lives there on the local stack); its tables are checked per pipeline.
    """
    params = params or {}
    if kind == "http":
        return _http_problems("connection", {"url": params.get("base_url")}, stores, None)
    if kind == "clickhouse" and params.get("database"):
        return _table_problems("connection", kind, (str(params["database"]).strip('"`').lower(), "*"), stores, "")
    if kind == "postgres" and params.get("schema"):
        return _table_problems("connection", kind, (str(params["schema"]).strip('"').lower(), "*"), stores, "")
    return []


# ---------------------------------------------------------------- per store


def _endpoint_problems(role: str, end: dict, stores: PlatformStores, resolve: Optional[Resolve]) -> list[str]:
    kind = end.get("kind")
    if kind == "kafka" and end.get("topic"):
        return _topic_problems(role, end["topic"], stores) or _unshared_problems(role, end, stores, resolve)
    if kind in ("postgres", "clickhouse") and end.get("table"):
        parts = tuple(p.strip('"`').lower() for p in str(end["table"]).split("."))
        return _table_problems(role, kind, parts, stores, _default_database(end, resolve))
    if kind == "http":
        return _http_problems(role, end, stores, resolve)
    return []


def _http_problems(role: str, end: dict, stores: PlatformStores, resolve: Optional[Resolve]) -> list[str]:
    """An HTTP source must not be the platform's own servers (ClickHouse's HTTP interface answers SQL)."""
    from urllib.parse import urlsplit

    urls = [str(end["url"])] if str(end.get("url") or "").startswith(("http://", "https://")) else []
    if resolve is not None:
        try:
            urls.append(str(resolve("http", end.get("connection")).param("base_url") or ""))
        except Exception:  # noqa: BLE001 - an unresolvable connection fails the run on its own
            pass
    out = []
    for url in filter(None, urls):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname and is_platform_endpoint(parts.hostname, port, stores):
            out.append(f"the {role} URL {url} points at one of the platform's own servers "
                       f"({parts.hostname}:{port}): never a pipeline's {role}")
    return out


def _unshared_problems(role: str, end: dict, stores: PlatformStores, resolve: Optional[Resolve]) -> list[str]:
    """A topic of the platform's own broker is a pipeline's only when an admin shared it: the broker carries
    every tenant's data topics next to the platform's logs, and a connection alone says nothing about whose."""
    if resolve is None:
        return []
    try:
        bootstrap = str(resolve("kafka", end.get("connection")).param("bootstrap") or "")
    except Exception:  # noqa: BLE001 - an unresolvable connection fails the run on its own
        return []
    topic = end["topic"]
    if not on_platform_broker(bootstrap, stores) or stores.shares(topic):
        return []
    return [f"the {role} Kafka topic {topic!r} is on the platform's own broker and not shared with pipelines "
            f"(an admin shares topics there with AIETL_KAFKA_SHARED_TOPICS)"]


def on_platform_broker(bootstrap: str, stores: PlatformStores) -> bool:
    """Does any server of ``bootstrap`` resolve to one of the platform's Kafka brokers?"""
    for server in str(bootstrap or "").split(","):
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if port.isdigit() and any(p == int(port) and _addresses(host) & _addresses(h) for h, p in stores.brokers):
            return True
    return False


def is_platform_endpoint(host: str, port: int, stores: PlatformStores) -> bool:
    """Same port and an address in common (every loopback address counts as the same host)."""
    mine = _addresses(host)
    return any(port == p and (mine & _addresses(h)) for h, p in stores.endpoints)


def _addresses(host: str) -> frozenset[str]:
    try:
        infos = socket.getaddrinfo(host, None)
        ips = {ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos}
    except (OSError, ValueError):
        return frozenset({host.lower()})
    # 127.0.0.0/8, ::1 and 0.0.0.0 all reach a server listening on loopback or on every address.
    return frozenset("loopback" if ip.is_loopback or ip.is_unspecified else str(ip) for ip in ips)


def _topic_problems(role: str, topic: str, stores: PlatformStores) -> list[str]:
    if topic.startswith(stores.topic_prefix):
        why = f"is under the platform's topic prefix {stores.topic_prefix!r}"
    elif topic.startswith("__") or any(m in topic for m in KAFKA_INTERNAL_MARKERS):
        why = "is an internal topic of Kafka or of the platform's stream processors"
    elif any(topic == t or topic.endswith("." + t) for t in _topology_topics()):
        why = "is named like a platform topic (another deployment's log)"
    else:
        return []
    return [f"the {role} Kafka topic {topic!r} {why}: the platform's own topics are never a pipeline's {role}"]


def _table_problems(role: str, kind: str, parts: tuple[str, ...], stores: PlatformStores,
                    default_db: str) -> list[str]:
    name = ".".join(parts)
    if kind == "postgres":
        schema = parts[-2] if len(parts) > 1 else ""
        if schema == stores.postgres_schema.lower():
            return [f"the {role} table {name} is in {stores.postgres_schema}, the platform's own schema "
                    "(connections, bookkeeping): never a pipeline's " + role]
        if schema in PG_SYSTEM_SCHEMAS or schema.startswith("pg_") or (not schema and parts[-1].startswith("pg_")):
            return [f"the {role} table {name} is a PostgreSQL system catalog: never a pipeline's {role}"]
        return []
    database = parts[-2] if len(parts) > 1 else default_db.lower()
    if database == stores.clickhouse_database.lower():
        return [f"the {role} table {name} is in {stores.clickhouse_database}, the platform's own ClickHouse "
                f"database: never a pipeline's {role}"]
    if database in CH_SYSTEM_DATABASES:
        return [f"the {role} table {name} is in the ClickHouse system database: never a pipeline's {role}"]
    if parts[-1] in _clickhouse_bookkeeping() or parts[-1].endswith("__staging"):
        return [f"the {role} table {name} is the executor's bookkeeping: never a pipeline's {role}"]
    return []


def _sql_problems(role: str, end: dict, sql: str, stores: PlatformStores, resolve: Optional[Resolve]) -> list[str]:
    from services.agents.qa.sql_rules import DIALECTS, referenced_tables

    kind = end.get("kind")
    if kind not in ("postgres", "clickhouse") or kind not in DIALECTS:
        return []
    out: list[str] = []
    for parts in referenced_tables(sql, DIALECTS[kind]):
        out += _table_problems(f"{role} SQL's", kind, parts, stores, _default_database(end, resolve))
    return out


def _default_database(end: dict, resolve: Optional[Resolve]) -> str:
    """The database a bare ClickHouse table name lands in: the connection's ``database``, else default."""
    if end.get("kind") != "clickhouse" or resolve is None:
        return "default"
    try:
        conn = resolve(end["kind"], end.get("connection"))
    except Exception:  # noqa: BLE001 - an unresolvable connection fails the run on its own
        return "default"
    return str(conn.param("database", "default") or "default")


@lru_cache(maxsize=1)
def _topology_topics() -> tuple[str, ...]:
    from topology.model import load_topology

    return tuple(load_topology().all_topics())


def _clickhouse_bookkeeping() -> frozenset[str]:
    from services.executor.writers import CH_BOOKKEEPING, CH_INTENTS

    return frozenset({CH_BOOKKEEPING, CH_INTENTS})


__all__ = ["PlatformStoreError", "PlatformStores", "check_pipeline_stores", "platform_store_problems"]
