"""Introspection of a registered connection: reachability, tables, column types, sample rows.

One entry point per operation, dispatched on the connection's kind to ``postgres``, ``clickhouse``,
``files`` (file folders and SQLite), ``kafka_topics`` and the HTTP JSON functions below. All functions are
blocking; callers on an event loop use ``asyncio.to_thread``. Driver errors are turned into
:class:`IntrospectionError` / :class:`TableNotFound` with any secret value scrubbed from the message.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from services.connectors.registry import Connection, ConnectionError_

MAX_SAMPLE = 10_000
_IMPL = {"postgres": ("services.connectors.postgres", ""), "clickhouse": ("services.connectors.clickhouse", ""),
         "file": ("services.connectors.files", ""), "sqlite": ("services.connectors.files", "sqlite_"),
         "kafka": ("services.connectors.kafka_topics", ""), "http": ("services.connectors.introspect", "http_")}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as the source spells it (postgres, clickhouse, sqlite) or inferred (files, kafka, http)
    nullable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IntrospectionError(ConnectionError_):
    status, title = 502, "Connection failed"


class TableNotFound(ConnectionError_):
    status, title = 404, "Table not found"


def type_dialect(kind: str) -> str:
    """The typemap dialect in which :class:`Column` types of ``kind`` are spelled."""
    return {"postgres": "postgres", "clickhouse": "clickhouse", "sqlite": "sqlite"}.get(kind, "inferred")


# ---------------------------------------------------------------- entry points

def test(conn: Connection) -> tuple[bool, str, float]:
    """(ok, detail, latency_ms): can the source be reached with these params and secrets?"""
    ok, detail, _reason, latency = check(conn)
    return ok, detail, latency


def check(conn: Connection) -> tuple[bool, str, str, float]:
    """(ok, detail, reason class, latency_ms). A network failure is one class, ``unreachable``, whatever the
    socket said, and a blocked address names only its class: the answer must not tell an open port from a
    closed or filtered one (a port scanner otherwise). Other failures (authentication, a missing database)
    keep their scrubbed message."""
    started = time.perf_counter()
    try:
        detail, ok, reason = _impl(conn, "test")(conn), True, "reachable"
    except Exception as exc:  # any failure is a "not ok" answer, never an exception for the caller
        ok, reason, detail = False, *_failure(exc, conn)
    return ok, detail, reason, round((time.perf_counter() - started) * 1000, 1)


_NETWORK_WORDS = ("refused", "timed out", "timeout", "no route", "unreachable", "reset by peer", "resolve",
                  "name or service", "nodename", "getaddrinfo", "translate host", "connection closed",
                  "server closed", "broken pipe", "eof occurred", "connect call failed", "transport",
                  "network", "all brokers down", "connection error", "connecterror", "disconnected")


def _failure(exc: Exception, conn: Connection) -> tuple[str, str]:
    from services.connectors.egress import BlockedAddress, FetchError, ResponseTooLarge

    if isinstance(exc, BlockedAddress):
        return ("blocked" if exc.reason != "dns" else "unreachable"), (
            f"not reachable: the address is not allowed ({exc.reason})" if exc.reason != "dns"
            else "not reachable (unreachable)")
    if isinstance(exc, ResponseTooLarge):
        return "too-large", "reachable, but the answer is larger than the platform reads"
    if isinstance(exc, FetchError):
        return exc.reason, scrub(str(exc), conn)
    text = _message(exc)
    if isinstance(exc, (OSError, TimeoutError)) or any(w in text.lower() for w in _NETWORK_WORDS):
        return "unreachable", "not reachable (unreachable)"
    return "error", scrub(text, conn)


def list_tables(conn: Connection) -> list[str]:
    return _call(conn, "list_tables")


def table_schema(conn: Connection, name: str) -> list[Column]:
    return _call(conn, "table_schema", name)


def sample_rows(conn: Connection, name: str, limit: int = 100) -> list[dict[str, Any]]:
    return _call(conn, "sample_rows", name, max(1, min(int(limit), MAX_SAMPLE)))


def _impl(conn: Connection, op: str) -> Callable:
    module, prefix = _IMPL[conn.kind]
    # Imported on use: each kind's driver (psycopg, clickhouse-driver, pyarrow, confluent-kafka) loads only
    # when a connection of that kind is introspected.
    return getattr(importlib.import_module(module), prefix + op)


def _call(conn: Connection, op: str, *args):
    try:
        return _impl(conn, op)(conn, *args)
    except ConnectionError_ as exc:  # scrubbed in place: subclasses keep their fields (a blocked reason)
        exc.args = (scrub(str(exc), conn),)
        raise exc from None
    except Exception as exc:  # driver errors: reported as the source's failure, secrets removed
        raise IntrospectionError(f"{conn.kind} connection {conn.name!r}: {scrub(_message(exc), conn)}") from None


def _message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def scrub(text: str, conn: Connection) -> str:
    """``text`` with every secret value of ``conn`` replaced, so driver messages can be shown and logged."""
    for value in _secret_values(conn.secrets):
        if len(value) >= 3:
            text = text.replace(value, "***")
    return text


def _secret_values(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_values(v)]
    return [str(value)] if value not in (None, "") else []


# ---------------------------------------------------------------- HTTP JSON APIs
# params: base_url, endpoints (the "tables"), records_path (dotted path to the record list), health_path,
# api_key_header (default Authorization, sent as "Bearer <api_key>"); secrets: api_key, headers.

def http_headers(conn: Connection) -> dict[str, str]:
    headers = {str(k): str(v) for k, v in (conn.secret("headers") or {}).items()}
    key = conn.secret("api_key")
    if key:
        header = conn.param("api_key_header", "Authorization")
        headers[header] = f"Bearer {key}" if header.lower() == "authorization" else str(key)
    return headers


def _http_get(conn: Connection, path: str) -> Any:
    from services.connectors import egress

    base = conn.param("base_url").rstrip("/")
    url = base + ("/" + path.lstrip("/") if path else "")
    timeout = min(float(conn.param("timeout_s", egress.DEFAULT_TIMEOUT_S)), egress.DEFAULT_DEADLINE_S)
    policy = egress.default_policy()
    with egress.client(policy, timeout) as http:  # addresses checked, redirects followed one hop at a time
        resp = egress.fetch(http, url, base_url=base, credentials=http_headers(conn), policy=policy)
    resp.raise_for_status()
    return resp


def http_test(conn: Connection) -> str:
    resp = _http_get(conn, conn.param("health_path", ""))
    return f"HTTP {resp.status_code}"


def http_list_tables(conn: Connection) -> list[str]:
    return [str(e) for e in conn.param("endpoints", [])]


def _http_endpoint(conn: Connection, name: str) -> str:
    declared = http_list_tables(conn)
    # Only declared endpoints (or relative paths when none are declared): never another host.
    if (declared and name not in declared) or "://" in name or ".." in name.split("/"):
        raise TableNotFound(f"{name!r} is not an endpoint of connection {conn.name!r}")
    return name


def _http_records(conn: Connection, name: str) -> list[dict]:
    from services.connectors.files import records_in

    doc = _http_get(conn, _http_endpoint(conn, name)).json()
    for key in filter(None, (conn.param("records_path") or "").split(".")):
        doc = doc.get(key) if isinstance(doc, dict) else None
    return records_in(doc)


def http_table_schema(conn: Connection, name: str) -> list[Column]:
    from services.connectors.files import infer_records

    return infer_records(_http_records(conn, name))


def http_sample_rows(conn: Connection, name: str, limit: int) -> list[dict]:
    return _http_records(conn, name)[:limit]
