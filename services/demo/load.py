"""Load the demo shop data (customers.csv, orders.csv) into PostgreSQL with psycopg 3 COPY.

``load_into_postgres`` drops and recreates the tables, so loading again gives the same rows; the schema
name is a parameter so tests can load into a throw-away schema. ``ensure_demo_data`` is what `aietl demo`
and the acceptance set-up call: generate the files once, load them once.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from services.demo import shopdata

_COPY_CHUNK = 1 << 16


def _copy_file(cur, schema: str, table: str, path: Path) -> None:
    copy_csv(cur, f"{schema}.{table}", [name for name, _ in shopdata.TABLES[table]], path)


def copy_csv(cur, table_ref: str, columns: list[str], path: Path) -> None:
    """COPY a CSV file with a header into ``table_ref`` (also used by the clinic data set)."""
    # Explicit column list: the CSV header is skipped (HEADER true), so file order must match this.
    stmt = f"COPY {table_ref} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, HEADER true)"
    with path.open("rb") as f, cur.copy(stmt) as copy:
        while chunk := f.read(_COPY_CHUNK):
            copy.write(chunk)


def load_into_postgres(dsn: str, data_dir: Path, schema: str = "shop") -> dict:
    """(Re)create ``schema``.customers/orders and COPY the CSVs of ``data_dir`` into them.

    Returns ``{"customers": n, "orders": n}`` as counted in the database after the load. Everything runs in
    one transaction, so readers see either the old tables or the complete new ones.
    """
    import psycopg  # imported here: generating files must not need a database driver

    schema = shopdata.check_schema_name(schema)
    data_dir = Path(data_dir)
    paths = {t: data_dir / shopdata.FILES[t] for t in ("customers", "orders")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"demo data missing: {', '.join(missing)}")

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        # Serialises concurrent loads of the same schema (CREATE SCHEMA IF NOT EXISTS races otherwise).
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"aietl.demo.{schema}",))
        for stmt in shopdata.ddl_statements(schema):
            cur.execute(stmt)
        for table, path in paths.items():
            _copy_file(cur, schema, table, path)
        counts = {}
        for table in paths:
            cur.execute(f"SELECT count(*) FROM {schema}.{table}")
            counts[table] = cur.fetchone()[0]
    return counts  # the connection context manager committed on a clean exit


def _files_complete(data_dir: Path) -> bool:
    return all((data_dir / rel).is_file() for rel in shopdata.FILES.values())


def _generate_atomically(data_dir: Path) -> None:
    """Generate into a sibling temp dir and rename it into place, so a crash never leaves half a data set."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = data_dir.with_name(f"{data_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shopdata.generate(tmp)
    if data_dir.exists() and not _files_complete(data_dir):
        shutil.rmtree(data_dir, ignore_errors=True)  # an incomplete leftover (e.g. a file deleted by hand)
    try:
        os.replace(tmp, data_dir)
    except OSError:
        # Someone else put a complete set there first; theirs is byte-identical, keep it.
        shutil.rmtree(tmp, ignore_errors=True)
        if not _files_complete(data_dir):
            raise


def _orders_loaded(dsn: str, schema: str) -> bool:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{schema}.orders",))
        if cur.fetchone()[0] is None:
            return False
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {schema}.orders)")
        return bool(cur.fetchone()[0])


def grant_read(settings, schema: str) -> None:
    """Let the demo connections' role (settings.postgres_demo_user) read ``schema``; nothing when that role
    does not exist (an external server without it). Run after every ensure: a reload recreates the tables."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(settings.postgres_dsn) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.postgres_demo_user,)).fetchone():
            return
        role, name = sql.Identifier(settings.postgres_demo_user), sql.Identifier(schema)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(name, role))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(name, role))
        # tables added to the schema later (a test's extra source) are readable too
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(name, role))


def ensure_demo_data(settings, data_dir: Optional[Path] = None, schema: str = "shop") -> Path:
    """Make sure the demo files exist and ``schema`` holds them; return the data directory.

    Files go to ``<settings.state_dir>/demo/shop_data`` unless ``data_dir`` is given and are generated only
    when missing. The load happens only when ``schema``.orders is missing or empty, so rows that acceptance
    cases inserted or changed in the source survive a later call.
    """
    schema = shopdata.check_schema_name(schema)
    data_dir = Path(data_dir) if data_dir is not None else Path(settings.state_dir) / "demo" / "shop_data"
    if not _files_complete(data_dir):
        _generate_atomically(data_dir)
    dsn = settings.postgres_dsn
    if not _orders_loaded(dsn, schema):
        load_into_postgres(dsn, data_dir, schema)
    grant_read(settings, schema)
    return data_dir
