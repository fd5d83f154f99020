"""API keys: ``aietl_<prefix>_<secret>``, shown once, stored as a SHA-256 hash in PostgreSQL.

The prefix (8 random hex chars) is public and finds the row; the secret is 32 random bytes (256 bits). A plain
SHA-256 of such a secret is enough: slow password hashes exist to stop guessing low-entropy passwords, and a
2^256 space cannot be guessed however fast the hash is, so a fast hash costs nothing in safety and keeps each
request cheap. Hashes are compared in constant time.

Table ``aietl_meta.aietl_api_keys`` (same database as the connection registry), created idempotently on first
use. Lookups are cached in-process for ``CACHE_SECONDS``: a revoked key stops working within that time.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from services.identity import (IdentityUnavailable, InvalidCredentials, InvalidKeyRequest, KeyNotFound,
                               Principal, check_role)

SCHEMA, TABLE = "aietl_meta", "aietl_api_keys"
CACHE_SECONDS = 5.0
_KEY = re.compile(r"aietl_([0-9a-f]{8})_([A-Za-z0-9_\-]{43})")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")
_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (
    prefix      text PRIMARY KEY,
    hash        bytea NOT NULL,
    tenant_id   text NOT NULL,
    role        text NOT NULL,
    name        text NOT NULL DEFAULT '',
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS aietl_api_keys_tenant ON {SCHEMA}.{TABLE} (tenant_id);
"""


def generate() -> tuple[str, str]:
    """A new (prefix, full key). The full key is returned once and never stored."""
    prefix = secrets.token_hex(4)
    return prefix, f"aietl_{prefix}_{secrets.token_urlsafe(32)}"


def parse(key: str) -> Optional[tuple[str, str]]:
    """(prefix, secret) of a well-formed key, else None (a JWT or garbage)."""
    match = _KEY.fullmatch(key.strip()) if key else None
    return (match.group(1), match.group(2)) if match else None


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_duration(text: Optional[str]) -> Optional[timedelta]:
    """'30d', '12h', '90m', '2w', '45s' -> timedelta; None/'' -> no expiry."""
    if not text:
        return None
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidKeyRequest(f"expiry must look like 30d, 12h, 90m, 2w or 45s, not {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def check_tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise InvalidKeyRequest("tenant must be 1-63 letters, digits, '_', '.', '-'")
    return tenant


@dataclass
class KeyInfo:
    prefix: str
    tenant: str
    role: str
    name: str
    created_by: str
    created_at: Optional[datetime]
    expires_at: Optional[datetime]
    revoked_at: Optional[datetime]

    def public(self) -> dict[str, Any]:
        iso = lambda v: v.isoformat() if v else None  # noqa: E731
        return {"prefix": self.prefix, "tenant": self.tenant, "role": self.role, "name": self.name,
                "created_by": self.created_by, "created_at": iso(self.created_at),
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at)}


_COLUMNS = "prefix, tenant_id, role, name, created_by, created_at, expires_at, revoked_at"


class KeyStore:
    """Create, list, revoke and verify API keys. Blocking (psycopg); one DB session per call."""

    def __init__(self, dsn: str, connect_timeout: int = 5, cache_seconds: float = CACHE_SECONDS):
        self._dsn, self._timeout, self._ttl = dsn, connect_timeout, cache_seconds
        self._ready = False
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Optional[tuple]]] = {}

    def __repr__(self) -> str:  # the DSN may carry the stack's password
        return "KeyStore(<dsn hidden>)"

    def _connect(self):
        import psycopg  # imported here: no driver load at import time

        try:
            conn = psycopg.connect(self._dsn, connect_timeout=self._timeout)
        except psycopg.OperationalError as exc:
            raise IdentityUnavailable(f"cannot reach the key store: {str(exc).strip()}") from None
        if not self._ready:
            try:
                with self._lock:
                    if not self._ready:
                        with conn.transaction():
                            conn.execute("SELECT pg_advisory_xact_lock(hashtext('aietl_meta.aietl_api_keys'))")
                            conn.execute(_DDL)
                        self._ready = True
            except BaseException:
                conn.close()
                raise
        return conn

    def create(self, tenant: str, role: str, name: str = "", expires_in: Optional[str] = None,
               created_by: str = "") -> tuple[str, KeyInfo]:
        check_tenant(tenant)
        check_role(role)
        if len(name) > 200:
            raise InvalidKeyRequest("name is at most 200 characters")
        ttl = parse_duration(expires_in)
        expires = datetime.now(timezone.utc) + ttl if ttl else None
        prefix, key = generate()
        with self._connect() as db:
            row = db.execute(
                f"INSERT INTO {SCHEMA}.{TABLE} (prefix, hash, tenant_id, role, name, created_by, expires_at) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (prefix, digest(key), tenant, role, name, created_by, expires)).fetchone()
        return key, KeyInfo(*row)

    def list(self, tenant: Optional[str] = None) -> list[KeyInfo]:
        where, args = ("WHERE tenant_id = %s", (tenant,)) if tenant else ("", ())
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM {SCHEMA}.{TABLE} {where} ORDER BY created_at",
                              args).fetchall()
        return [KeyInfo(*row) for row in rows]

    def revoke(self, prefix: str, tenant: Optional[str] = None) -> KeyInfo:
        """Revoke by prefix; with ``tenant``, a key of another tenant is not found (same as a missing one)."""
        where, args = "prefix = %s", [prefix]
        if tenant is not None:
            where += " AND tenant_id = %s"
            args.append(tenant)
        with self._connect() as db:
            row = db.execute(
                f"UPDATE {SCHEMA}.{TABLE} SET revoked_at = coalesce(revoked_at, clock_timestamp()) "
                f"WHERE {where} RETURNING {_COLUMNS}", tuple(args)).fetchone()
        if row is None:
            raise KeyNotFound(f"no key {prefix!r}")
        self._cache.pop(prefix, None)
        return KeyInfo(*row)

    def delete(self, prefixes: list[str]) -> int:
        """Remove rows outright (test clean-up); revocation is the operator's tool."""
        if not prefixes:
            return 0
        with self._connect() as db:
            count = db.execute(f"DELETE FROM {SCHEMA}.{TABLE} WHERE prefix = ANY(%s)", (list(prefixes),)).rowcount
        for prefix in prefixes:
            self._cache.pop(prefix, None)
        return count

    def verify(self, key: str) -> Principal:
        """The principal of a valid key; InvalidCredentials for a malformed, unknown, revoked or expired one."""
        parsed = parse(key)
        if parsed is None:
            raise InvalidCredentials("malformed API key")
        prefix = parsed[0]
        now = time.monotonic()
        cached = self._cache.get(prefix)
        if cached is None or cached[0] < now:
            with self._connect() as db:
                row = db.execute(f"SELECT hash, tenant_id, role, expires_at, revoked_at FROM {SCHEMA}.{TABLE} "
                                 "WHERE prefix = %s", (prefix,)).fetchone()
            if len(self._cache) > 10_000:  # bounded: unknown prefixes are cached too
                self._cache.clear()
            self._cache[prefix] = cached = (now + self._ttl, tuple(row) if row else None)
        row = cached[1]
        # compare even for an unknown prefix so timing does not tell which prefixes exist
        stored = row[0] if row else b"\0" * 32
        if not hmac.compare_digest(bytes(stored), digest(key)) or row is None:
            raise InvalidCredentials("unknown API key")
        _hash, tenant, role, expires_at, revoked_at = row
        if revoked_at is not None:
            raise InvalidCredentials("API key revoked")
        if expires_at is not None and expires_at <= datetime.now(timezone.utc):
            raise InvalidCredentials("API key expired")
        return Principal(tenant=tenant, role=role, subject=f"key:{prefix}", key_id=prefix)


def build_store(settings) -> KeyStore:
    return KeyStore(settings.postgres_dsn)


__all__ = ["CACHE_SECONDS", "KeyInfo", "KeyStore", "build_store", "check_tenant", "digest", "generate",
           "parse", "parse_duration"]
