"""Named connections per tenant, stored in the stack's PostgreSQL with their secrets encrypted.

Table ``aietl_meta.aietl_connections`` (created on first use, idempotently): one row per (tenant, name);
``params`` is plaintext JSON (host, port, database, ...), ``secrets`` a Fernet token (see
:mod:`services.connectors.secrets`) and ``secret_names`` the names of the secrets, so a listing can show
which are set without the key. Pipelines and events refer to connections by name only.
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional

from services.connectors.secrets import SecretCipher, SecretsError, mask, redact, secret_paths

KINDS = ("postgres", "clickhouse", "file", "kafka", "http", "sqlite")
REQUIRED = {"postgres": ("host", "database", "user"), "clickhouse": ("host",), "file": ("folder",),
            "kafka": ("bootstrap",), "http": ("base_url",), "sqlite": ("path",)}
INT_PARAMS = ("port",)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,62}")
SCHEMA, TABLE = "aietl_meta", "aietl_connections"
_COLUMNS = "id, tenant_id, name, kind, params, secrets, secret_names, is_default, created_at"


class ConnectionError_(Exception):
    """A connection problem a user can cause or fix; ``status`` and ``title`` map it to HTTP."""

    status = 400
    title = "Connection error"


class ConnectionExists(ConnectionError_):
    status, title = 409, "Connection already exists"


class ConnectionNotFound(ConnectionError_):
    status, title = 404, "Connection not found"


class InvalidConnection(ConnectionError_):
    status, title = 422, "Invalid connection"


class RegistryUnavailable(ConnectionError_):
    status, title = 503, "Connection registry unavailable"


@dataclass
class Connection:
    """A resolved connection, secrets decrypted; ``repr`` and :meth:`public` never show them."""

    tenant: str
    name: str
    kind: str
    params: dict[str, Any]
    secrets: dict[str, Any] = field(default_factory=dict)
    is_default: bool = False
    id: str = ""
    created_at: Optional[datetime] = None

    def __repr__(self) -> str:
        return (f"Connection(tenant={self.tenant!r}, name={self.name!r}, kind={self.kind!r}, "
                f"params={self.params!r}, secrets={mask(self.secrets)!r}, is_default={self.is_default})")

    __str__ = __repr__

    def public(self) -> dict[str, Any]:
        return _public(self.name, self.kind, self.params, list(self.secrets), self.is_default, self.created_at)

    def param(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def secret(self, key: str, default: Any = None) -> Any:
        return self.secrets.get(key, default)


def _public(name, kind, params, secret_names, is_default, created_at) -> dict[str, Any]:
    # redact: rows stored before the shape check may hold secret-like params; they are never shown
    return {"name": name, "kind": kind, "params": redact(params), "secrets": mask(dict.fromkeys(secret_names)),
            "is_default": is_default, "created_at": created_at.isoformat() if created_at else None}


# ---------------------------------------------------------------- validation

def validate(name: str, kind: str, params: dict, secrets: dict) -> dict:
    """Checked and normalised params (port as int); raises InvalidConnection with the reason."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidConnection(f"connection name {name!r} must start with a letter and contain only letters, "
                                "digits, '_', '.', '-' (at most 63 characters)")
    if kind not in KINDS:
        raise InvalidConnection(f"unknown connection kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not isinstance(params, dict) or not isinstance(secrets, dict):
        raise InvalidConnection("params and secrets must be JSON objects")
    found = secret_paths(params)
    if found:  # stored and listed in plaintext otherwise; the message names where, never the value
        where = ", ".join(p for p, _ in found)
        why = "; ".join(f"{p}: {reason}" for p, reason in found)
        raise InvalidConnection(f"{where} must be given in secrets, not in params ({why}). Put passwords, "
                                "tokens and keys in secrets (password, api_key, headers, sasl_password) and "
                                "give URLs and DSNs without user:password@")
    missing = [k for k in REQUIRED[kind] if params.get(k) in (None, "")]
    if missing:
        raise InvalidConnection(f"a {kind} connection needs params: {', '.join(missing)}")
    if kind == "file":
        from services.connectors.files import allowed_folder  # imported here: files imports this module

        allowed_folder(params["folder"], name)  # refused now, and again on every read
    return _normalise_ints(params)


def _normalise_ints(params: dict) -> dict:
    out = dict(params)
    for key in INT_PARAMS:
        if key in out and out[key] is not None:
            try:
                out[key] = int(out[key])
            except (TypeError, ValueError):
                raise InvalidConnection(f"param {key} must be an integer, got {out[key]!r}") from None
    return out


# ---------------------------------------------------------------- storage

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (
    id           uuid PRIMARY KEY,
    tenant_id    text NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    params       jsonb NOT NULL DEFAULT '{{}}',
    secrets      bytea,
    secret_names text[] NOT NULL DEFAULT '{{}}',
    is_default   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX IF NOT EXISTS aietl_connections_one_default
    ON {SCHEMA}.{TABLE} (tenant_id, kind) WHERE is_default;
"""


class ConnectionRegistry:
    """Create, read, list and delete a tenant's connections. Blocking (psycopg); one DB session per call."""

    def __init__(self, dsn: str, cipher: SecretCipher, connect_timeout: int = 5,
                 check: Optional[Callable[[str, dict], list[str]]] = None):
        # ``check(kind, params)``: problems that refuse a connection beyond its own shape (the platform's
        # stores, services.connectors.guards), given by the composition root that knows the deployment.
        self._dsn, self._cipher, self._timeout, self._check = dsn, cipher, connect_timeout, check
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # the DSN may carry the stack's password
        return "ConnectionRegistry(<dsn hidden>)"

    def _connect(self):
        import psycopg  # imported here: no work (or driver load) at import time

        try:
            conn = psycopg.connect(self._dsn, connect_timeout=self._timeout)
        except psycopg.OperationalError as exc:  # the message names host and user, never the password
            raise RegistryUnavailable(f"cannot reach the registry database: {str(exc).strip()}") from None
        if not self._ready:
            try:
                self._ensure_schema(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    def _ensure_schema(self, conn) -> None:
        with self._lock:
            if self._ready:
                return
            with conn.transaction():
                # Serialises concurrent first uses: CREATE ... IF NOT EXISTS alone can still race in pg_type.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('aietl_meta.aietl_connections'))")
                conn.execute(_DDL)
            self._ready = True

    # -- writes

    def create(self, tenant: str, name: str, kind: str, params: dict, secrets: Optional[dict] = None,
               is_default: bool = False) -> Connection:
        secrets = dict(secrets or {})
        params = validate(name, kind, params, secrets)
        problems = self._check(kind, params) if self._check else []
        if problems:
            raise InvalidConnection("; ".join(problems))
        token = self._cipher.encrypt(tenant, name, secrets) if secrets else None
        conn_id = str(uuid.uuid4())
        with self._connect() as db, db.transaction():
            if db.execute(f"SELECT 1 FROM {SCHEMA}.{TABLE} WHERE tenant_id = %s AND name = %s FOR UPDATE",
                          (tenant, name)).fetchone():
                raise ConnectionExists(f"a connection named {name!r} already exists")
            if is_default:  # one default per kind: the new one replaces the old
                db.execute(f"UPDATE {SCHEMA}.{TABLE} SET is_default = false "
                           "WHERE tenant_id = %s AND kind = %s AND is_default", (tenant, kind))
            row = self._insert(db, (conn_id, tenant, name, kind, json.dumps(params), token, sorted(secrets),
                                    is_default))
        return Connection(tenant, name, kind, params, secrets, is_default, conn_id, row[0])

    def _insert(self, db, values: tuple):
        import psycopg

        try:
            return db.execute(f"INSERT INTO {SCHEMA}.{TABLE} "
                              "(id, tenant_id, name, kind, params, secrets, secret_names, is_default) "
                              "VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s) RETURNING created_at",
                              values).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "aietl_connections_one_default":  # two defaults created at once
                raise ConnectionExists(f"another default {values[3]} connection was created at the same "
                                       "time; retry") from None
            raise ConnectionExists(f"a connection named {values[2]!r} already exists") from None

    def delete(self, tenant: str, name: str) -> None:
        with self._connect() as db:
            cur = db.execute(f"DELETE FROM {SCHEMA}.{TABLE} WHERE tenant_id = %s AND name = %s", (tenant, name))
            if cur.rowcount == 0:
                raise ConnectionNotFound(f"no connection named {name!r}")

    # -- reads

    def get(self, tenant: str, name: str) -> Connection:
        row = self._one(f"SELECT {_COLUMNS} FROM {SCHEMA}.{TABLE} WHERE tenant_id = %s AND name = %s",
                        (tenant, name))
        if row is None:
            raise ConnectionNotFound(f"no connection named {name!r}")
        return self._decode(row)

    def list(self, tenant: str) -> list[dict[str, Any]]:
        """Every connection of ``tenant`` as public dicts: secrets appear only as masked names."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM {SCHEMA}.{TABLE} WHERE tenant_id = %s "
                              "ORDER BY name", (tenant,)).fetchall()
        return [_public(r[2], r[3], r[4], r[6], r[7], r[8]) for r in rows]

    def fingerprint(self, tenant: str) -> str:
        """Changes whenever a connection of ``tenant`` is created, replaced, deleted or made default: caches
        built from the registry (the catalog) compare it instead of trusting their age alone."""
        row = self._one(f"SELECT count(*), md5(coalesce(string_agg(id::text || name || params::text || "
                        f"is_default::text || created_at::text, ',' ORDER BY id), '')) "
                        f"FROM {SCHEMA}.{TABLE} WHERE tenant_id = %s", (tenant,))
        return f"{row[0]}:{row[1]}"

    def default_for(self, tenant: str, kind: str) -> Optional[Connection]:
        """The connection of ``kind`` marked default, else the first created; None when there is none."""
        row = self._one(f"SELECT {_COLUMNS} FROM {SCHEMA}.{TABLE} WHERE tenant_id = %s AND kind = %s "
                        "ORDER BY is_default DESC, created_at, name LIMIT 1", (tenant, kind))
        return self._decode(row) if row else None

    def resolve(self, tenant: str, kind: Optional[str] = None, name: Optional[str] = None) -> Connection:
        """By name (checked against ``kind`` when both are given), else the tenant's default of ``kind``."""
        if name:
            found = self.get(tenant, name)
            if kind and found.kind != kind:
                raise InvalidConnection(f"connection {name!r} is a {found.kind} connection, not {kind}")
            return found
        if not kind:
            raise InvalidConnection("give a connection name or a kind to resolve")
        if kind not in KINDS:
            raise InvalidConnection(f"unknown connection kind {kind!r}; expected one of {', '.join(KINDS)}")
        found = self.default_for(tenant, kind)
        if found is None:
            raise ConnectionNotFound(f"no {kind} connection is registered; create one first")
        return found

    def _one(self, query: str, args: tuple):
        with self._connect() as db:
            return db.execute(query, args).fetchone()

    def _decode(self, row) -> Connection:
        conn_id, tenant, name, kind, params, token, _names, is_default, created_at = row
        secrets = self._cipher.decrypt(tenant, name, token) if token is not None else {}
        return Connection(tenant, name, kind, params, secrets, is_default, str(conn_id), created_at)


def build_registry(settings) -> ConnectionRegistry:
    """The registry of the stack's PostgreSQL (settings.postgres_dsn), with the configured secret key."""
    from services.connectors.guards import PlatformStores, connection_store_problems
    from services.connectors.secrets import cipher_from_settings

    stores = PlatformStores.of(settings)
    return ConnectionRegistry(settings.postgres_dsn, cipher_from_settings(settings),
                              check=lambda kind, params: connection_store_problems(kind, params, stores))


__all__ = ["KINDS", "Connection", "ConnectionError_", "ConnectionExists", "ConnectionNotFound",
           "ConnectionRegistry", "InvalidConnection", "RegistryUnavailable", "SecretsError", "build_registry",
           "validate"]
