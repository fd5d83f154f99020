"""Which generation of its secret each webhook is at: rotating a hook bumps it, and the old secret stops.

Kept in PostgreSQL (``aietl_meta.aietl_webhook_generations``, the database of the key store and the
connection registry), not in the Redis read model: a rebuilt or lost read model must never bring back a
secret that was rotated away. A hook never rotated has no row (generation 0). Blocking (psycopg).
"""
from __future__ import annotations

SCHEMA, TABLE = "aietl_meta", "aietl_webhook_generations"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (
    hook_id     text PRIMARY KEY,
    tenant_id   text NOT NULL,
    generation  integer NOT NULL,
    rotated_by  text NOT NULL DEFAULT '',
    rotated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


class HookStoreUnavailable(Exception):
    status, title = 503, "Webhook store unavailable"


class HookStore:
    def __init__(self, dsn: str, connect_timeout: int = 5):
        self._dsn, self._timeout, self._ready = dsn, connect_timeout, False

    def __repr__(self) -> str:  # the DSN may carry the stack's password
        return "HookStore(<dsn hidden>)"

    def _connect(self):
        import psycopg

        try:
            conn = psycopg.connect(self._dsn, connect_timeout=self._timeout)
        except psycopg.OperationalError as exc:
            raise HookStoreUnavailable(f"cannot reach the webhook store: {str(exc).strip()}") from None
        if not self._ready:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('aietl_meta.aietl_webhook_generations'))")
                conn.execute(_DDL)
            self._ready = True
        return conn

    def generation(self, hook_id: str) -> int:
        with self._connect() as db:
            row = db.execute(f"SELECT generation FROM {SCHEMA}.{TABLE} WHERE hook_id = %s", (hook_id,)).fetchone()
        return row[0] if row else 0

    def rotate(self, hook_id: str, tenant: str, by: str = "") -> int:
        """The next generation (atomic: two rotations at once give two generations)."""
        with self._connect() as db:
            (gen,) = db.execute(
                f"INSERT INTO {SCHEMA}.{TABLE} (hook_id, tenant_id, generation, rotated_by) VALUES (%s, %s, 1, %s) "
                f"ON CONFLICT (hook_id) DO UPDATE SET generation = {TABLE}.generation + 1, "
                "rotated_by = excluded.rotated_by, rotated_at = clock_timestamp() RETURNING generation",
                (hook_id, tenant, by)).fetchone()
        return gen

    def forget(self, tenants: list[str]) -> int:
        """Remove the rows of these tenants (test clean-up)."""
        if not tenants:
            return 0
        with self._connect() as db:
            return db.execute(f"DELETE FROM {SCHEMA}.{TABLE} WHERE tenant_id = ANY(%s)", (list(tenants),)).rowcount


def build_hook_store(settings) -> HookStore:
    return HookStore(settings.postgres_dsn)


__all__ = ["HookStore", "HookStoreUnavailable", "build_hook_store"]
