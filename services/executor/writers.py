"""Writers: load Arrow batches into a target with a load mode (append, replace, merge on keys).

Every ``write(batch, key)`` carries an idempotency key (``<run_id>:<batch_no>``); a re-delivered key is
not loaded twice:

* PostgreSQL and SQLite record the key in a bookkeeping table in the *same transaction* as the load, so
  there is no window: either the batch and its key commit, or neither does.
* ClickHouse has no transactions: the key is checked in ``aietl_loaded_batches`` before the insert and
  recorded right after it. For *append* targets an intent (the key, the table's row count before the
  insert and the batch's rows) is recorded first in ``aietl_batch_intents``, so after a crash between the
  insert and the key record the next attempt can tell: the count grew by exactly the batch (it landed:
  record the key, skip it) or did not grow (load it). One INSERT of a batch (far below
  ``max_insert_block_size``) is one block and lands whole or not at all. Anything else means another
  writer appended to the same table meanwhile, and the run fails rather than guess. Merge targets are
  safe anyway (ReplacingMergeTree keeps one row per key, read with FINAL) and replace targets too (below).
* Replace loads into a staging table started afresh by each attempt of a run and swapped in at
  ``finish()``; batch keys only guard re-delivery within the attempt (a retried run reloads everything
  into a new staging table, so nothing doubles). The swap records ``<run_id>:replace``: a re-delivered
  finished run does not swap again. The old table stays readable until the swap.
* Files are written to a temporary file and renamed into place at ``finish()``; the run id is then
  recorded in a sidecar so a finished run is not appended twice (window: a crash between the rename and
  the sidecar write).
* Kafka: an idempotent producer; duplicates after a crash between produce and the run's bookkeeping
  are possible (consumers dedupe by key), the batch key travels as a header for that.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Optional

from services.core.faults import crash_point_from_env
from services.executor.batches import dumps_row, jsonable, nested_to_json

META_SCHEMA = "aietl_meta"
PG_BOOKKEEPING = "loaded_batches"
CH_BOOKKEEPING = "aietl_loaded_batches"
CH_INTENTS = "aietl_batch_intents"


class WriterError(Exception):
    """The target cannot be loaded as asked (no DDL and no batch to infer it from, bad mode, ...)."""


class Writer:
    """Base: ``write`` each batch with its key, then ``finish`` (replace swap / file commit), ``close``."""

    def __init__(self, conn, table: str, *, mode: str = "append", keys: Iterable[str] = (), run_id: str = "",
                 ddl: Optional[str] = None, setup_sql: Iterable[str] = ()):
        if mode not in ("append", "replace", "merge"):
            raise WriterError(f"unknown load mode {mode!r}")
        if mode == "merge" and not keys:
            raise WriterError("merge needs keys")
        self.conn, self.table, self.mode, self.keys = conn, table, mode, list(keys)
        self.run_id, self.ddl, self.setup_sql = run_id, ddl, list(setup_sql or ())
        self.rows_written = 0
        self._seen: set[str] = set()  # keys of this attempt (replace, files, Kafka)
        self._ready = False
        self._done = False  # the run already landed (replace swapped / file committed)
        self.landed_before = False  # the last write's key had landed earlier (a resumed run)

    def write(self, batch, key: str) -> int:
        """Loads ``batch`` unless ``key`` was loaded; returns the rows loaded (0 for a duplicate)."""
        self.landed_before = False
        if batch.num_rows == 0:
            return 0
        if key in self._seen:
            self.landed_before = True
            return 0
        if not self._ready:
            self._prepare(batch.schema)
            self._ready = True
        if self._done:
            self.landed_before = True
            return 0
        loaded = self._write(batch, key)
        self._seen.add(key)
        self.rows_written += loaded
        self.landed_before = loaded == 0
        return loaded

    def finish(self) -> None:
        if not self._ready:
            self._prepare(None)
            self._ready = True
        if not self._done:
            self._finish()

    def close(self) -> None:
        """Releases connections; a replace that did not finish leaves the target untouched."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # subclasses
    def _prepare(self, schema) -> None:
        raise NotImplementedError

    def _write(self, batch, key: str) -> int:
        raise NotImplementedError

    def _finish(self) -> None:
        pass


def _short(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _qualified(table: str, default_schema: str) -> tuple[str, str]:
    schema, _, name = table.partition(".") if "." in table else (default_schema, "", table)
    return schema, name


# ================================================================ PostgreSQL

def _pg_writable(conn):
    import psycopg

    kwargs = {"host": conn.param("host"), "port": conn.param("port", 5432), "dbname": conn.param("database"),
              "user": conn.param("user"), "password": conn.secret("password"),
              "connect_timeout": int(conn.param("connect_timeout", 5)), "application_name": "aietl-executor",
              "sslmode": conn.param("sslmode")}
    return psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None}, autocommit=True)


PG_META_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {META_SCHEMA};
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.{PG_BOOKKEEPING} (
    target text NOT NULL, batch_key text NOT NULL, rows bigint NOT NULL DEFAULT 0,
    loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (target, batch_key))
"""


class PostgresWriter(Writer):
    """COPY ... FROM STDIN (CSV produced by Arrow); bookkeeping in ``aietl_meta.loaded_batches``."""

    def __init__(self, conn, table: str, **kw):
        super().__init__(conn, table, **kw)
        self.schema_name, self.name = _qualified(table, "public")
        self.target_key = f"{self.schema_name}.{self.name}"
        self.staging = f"{self.name[:40]}__stg_{_short(self.run_id)}"
        self._db = None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self):
        if self._db is None:
            self._db = _pg_writable(self.conn)
        return self._db

    def _ident(self, name: Optional[str] = None):
        from psycopg import sql

        return sql.Identifier(self.schema_name, name or self.name)

    # -- preparing the target

    def _prepare(self, schema) -> None:
        with self.db.transaction():
            # One preparer at a time per target: CREATE ... IF NOT EXISTS can race in pg_type.
            self.db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"aietl-target:{self.target_key}",))
            # A role that may use the bookkeeping table but not create in its schema (the local stack's demo
            # role) finds it made already; CREATE ... IF NOT EXISTS would still need that right.
            if self.db.execute("SELECT to_regclass(%s)", (f"{META_SCHEMA}.{PG_BOOKKEEPING}",)).fetchone()[0] is None:
                self.db.execute(PG_META_DDL)
            for stmt in self.setup_sql:
                self.db.execute(stmt)
            if not self._exists(self.name):
                self._create(schema)
            if self.mode == "merge":
                self._ensure_unique_keys()
            if self.mode == "replace":
                self._done = self._recorded(f"{self.run_id}:replace")
                if not self._done:
                    self._new_staging()

    def _exists(self, name: str) -> bool:
        return self.db.execute("SELECT to_regclass(%s)", (f'"{self.schema_name}"."{name}"',)).fetchone()[0] \
            is not None

    def _create(self, schema) -> None:
        if self.ddl:
            self.db.execute(self.ddl)
            return
        if schema is None:
            raise WriterError(f"target {self.target_key} does not exist and there is no DDL nor batch to infer it")
        from psycopg import sql

        from services.connectors.typemap import from_arrow, from_inferred

        cols = [sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(from_inferred(from_arrow(f.type), "postgres")))
                for f in schema]
        self.db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema_name)))
        self.db.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(self._ident(), sql.SQL(", ").join(cols)))

    def _ensure_unique_keys(self) -> None:
        """ON CONFLICT (keys) needs a unique index on exactly the keys; made when the target has none."""
        from psycopg import sql

        found = self.db.execute("""
            SELECT 1 FROM pg_index i
             WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL
               AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
                     WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = %s""",
                                (f'"{self.schema_name}"."{self.name}"', sorted(self.keys))).fetchone()
        if not found:
            index = sql.Identifier(f"{self.name[:40]}_aietl_merge_key")
            self.db.execute(sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
                index, self._ident(), sql.SQL(", ").join(map(sql.Identifier, self.keys))))

    def _new_staging(self) -> None:
        from psycopg import sql

        self.db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(self.staging)))
        self.db.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
            self._ident(self.staging), self._ident()))

    # -- bookkeeping

    def _recorded(self, key: str) -> bool:
        return self.db.execute(f"SELECT 1 FROM {META_SCHEMA}.{PG_BOOKKEEPING} WHERE target = %s AND batch_key = %s",
                               (self.target_key, key)).fetchone() is not None

    def _claim(self, key: str, rows: int) -> bool:
        """Records ``key`` inside the current transaction; False when it was loaded before. A concurrent
        loader of the same key waits on the primary key until this transaction ends."""
        row = self.db.execute(f"INSERT INTO {META_SCHEMA}.{PG_BOOKKEEPING} (target, batch_key, rows) "
                              "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                              (self.target_key, key, rows)).fetchone()
        return row is not None

    # -- loading

    def _write(self, batch, key: str) -> int:
        if self.mode == "replace":
            with self.db.transaction():
                self._copy(batch, self._ident(self.staging))
            return batch.num_rows
        with self.db.transaction():
            if not self._claim(key, batch.num_rows):
                return 0
            if self.mode == "append":
                self._copy(batch, self._ident())
            else:
                self._merge(batch)
        return batch.num_rows

    def _copy(self, batch, table) -> None:
        import pyarrow.csv as pcsv
        from psycopg import sql

        buf = io.BytesIO()
        # Arrow's CSV: NULL is an unquoted empty field, '' a quoted one; PostgreSQL's CSV reads them so.
        pcsv.write_csv(nested_to_json(batch), buf, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
        cols = sql.SQL(", ").join(map(sql.Identifier, batch.schema.names))
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, cols)
        with self.db.cursor().copy(stmt) as copy:
            view = buf.getbuffer()
            for start in range(0, len(view), 1 << 20):
                copy.write(view[start:start + (1 << 20)])

    def _merge(self, batch) -> None:
        """COPY into a temp table, then one INSERT ... ON CONFLICT (keys) DO UPDATE; within the batch the
        last row of a key wins (DISTINCT ON over the temp table's physical order)."""
        from psycopg import sql

        tmp = sql.Identifier(f"aietl_merge_{_short(self.run_id)}")
        self.db.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            tmp, self._ident()))
        self._copy(batch, tmp)
        names = batch.schema.names
        cols = sql.SQL(", ").join(map(sql.Identifier, names))
        keys = sql.SQL(", ").join(map(sql.Identifier, self.keys))
        updates = [sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                   for c in names if c not in self.keys]
        action = sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(updates) if updates else sql.SQL("DO NOTHING")
        self.db.execute(sql.SQL("INSERT INTO {t} ({cols}) SELECT DISTINCT ON ({keys}) {cols} FROM {tmp} "
                                "ORDER BY {keys}, ctid DESC ON CONFLICT ({keys}) ").format(
            t=self._ident(), cols=cols, keys=keys, tmp=tmp) + action)

    def _finish(self) -> None:
        if self.mode != "replace":
            return
        from psycopg import sql

        old_name = f"{self.name[:40]}__old_{_short(self.run_id)}"
        with self.db.transaction():
            if not self._claim(f"{self.run_id}:replace", self.rows_written):
                self.db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(self.staging)))
                return
            # One transaction: readers see the old table until COMMIT, then the new one.
            self.db.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(self._ident(), sql.Identifier(old_name)))
            self.db.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(self._ident(self.staging),
                                                                         sql.Identifier(self.name)))
            self.db.execute(sql.SQL("DROP TABLE {}").format(self._ident(old_name)))


# ================================================================ ClickHouse

class ClickHouseWriter(Writer):
    """Columnar native inserts; bookkeeping in ``<database>.aietl_loaded_batches`` (see the module doc)."""

    def __init__(self, conn, table: str, **kw):
        super().__init__(conn, table, **kw)
        self.database, self.name = _qualified(table, conn.param("database", "default"))
        self.target_key = f"{self.database}.{self.name}"
        self.staging = f"{self.name}__staging"
        self._client = None
        self._types: dict[str, str] = {}

    @property
    def client(self):
        if self._client is None:
            from services.connectors.clickhouse import native_client

            self._client = native_client(self.conn)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def _ref(self, name: Optional[str] = None) -> str:
        from services.connectors.clickhouse import quote

        return f"{quote(self.database)}.{quote(name or self.name)}"

    def _exec(self, query: str, params: Any = None, **kw):
        return self.client.execute(query, params, **kw)

    def _prepare(self, schema) -> None:
        from services.connectors.clickhouse import quote

        for stmt in self.setup_sql:
            self._exec(stmt)
        self._exec(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")
        self._exec(f"CREATE TABLE IF NOT EXISTS {self._ref(CH_BOOKKEEPING)} (target String, batch_key String, "
                   "rows UInt64, loaded_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY (target, batch_key)")
        if self.mode == "append":
            self._exec(f"CREATE TABLE IF NOT EXISTS {self._ref(CH_INTENTS)} (target String, batch_key String, "
                       "count_before UInt64, rows UInt64, at DateTime DEFAULT now()) "
                       "ENGINE = MergeTree ORDER BY (target, batch_key)")
        if not self._exists(self.name):
            self._create(schema)
        if self.mode == "replace":
            self._done = self._recorded(f"{self.run_id}:replace")
            if not self._done:
                self._exec(f"DROP TABLE IF EXISTS {self._ref(self.staging)}")
                self._exec(f"CREATE TABLE {self._ref(self.staging)} AS {self._ref()}")
        self._types = dict(self._exec("SELECT name, type FROM system.columns WHERE database = %(d)s AND "
                                      "table = %(t)s", {"d": self.database, "t": self.name}))

    def _exists(self, name: str) -> bool:
        return bool(self._exec("EXISTS TABLE " + self._ref(name))[0][0])

    def _create(self, schema) -> None:
        if self.ddl:
            self._exec(self.ddl)
            return
        if schema is None:
            raise WriterError(f"target {self.target_key} does not exist and there is no DDL nor batch to infer it")
        from services.connectors.clickhouse import quote
        from services.connectors.typemap import from_arrow, from_inferred

        cols = ", ".join(f"{quote(f.name)} {from_inferred(from_arrow(f.type), 'clickhouse', f.name not in self.keys)}"
                         for f in schema)
        if self.mode == "merge":
            engine = f"ReplacingMergeTree ORDER BY ({', '.join(quote(k) for k in self.keys)})"
        else:
            engine = "MergeTree ORDER BY tuple()"
        self._exec(f"CREATE TABLE IF NOT EXISTS {self._ref()} ({cols}) ENGINE = {engine}")

    def _recorded(self, key: str) -> bool:
        return self._exec(f"SELECT count() FROM {self._ref(CH_BOOKKEEPING)} WHERE target = %(t)s AND "
                          "batch_key = %(k)s", {"t": self.target_key, "k": key})[0][0] > 0

    def _record(self, key: str, rows: int) -> None:
        self._exec(f"INSERT INTO {self._ref(CH_BOOKKEEPING)} (target, batch_key, rows) VALUES",
                   [(self.target_key, key, rows)])

    def _write(self, batch, key: str) -> int:
        if self.mode == "replace":
            self._insert(batch, self.staging)
            return batch.num_rows
        if self._recorded(key):
            return 0
        if self.mode == "append" and self._landed_by_a_crashed_attempt(key, batch.num_rows):
            self._record(key, batch.num_rows)
            return 0
        self._insert(batch, self.name)
        crash_point_from_env("writer.after_clickhouse_insert")
        self._record(key, batch.num_rows)
        return batch.num_rows

    def _count(self) -> int:
        return self._exec(f"SELECT count() FROM {self._ref()}")[0][0]

    def _landed_by_a_crashed_attempt(self, key: str, rows: int) -> bool:
        """Records the intent to load ``key``; True when an earlier attempt's insert of it had landed."""
        found = self._exec(f"SELECT count_before, rows FROM {self._ref(CH_INTENTS)} WHERE target = %(t)s AND "
                           "batch_key = %(k)s LIMIT 1", {"t": self.target_key, "k": key})
        now = self._count()
        if not found:
            self._exec(f"INSERT INTO {self._ref(CH_INTENTS)} (target, batch_key, count_before, rows) VALUES",
                       [(self.target_key, key, now, rows)])
            return False
        before, planned = found[0]
        if now == before:
            return False
        if now == before + planned:
            return True
        raise WriterError(f"cannot tell whether batch {key} reached {self.target_key} before a crash: the table "
                          f"went from {before} to {now} rows, not by the batch's {planned}; another writer "
                          "appended meanwhile. Check the table, then run again.")

    def _insert(self, batch, table: str) -> None:
        from services.connectors.clickhouse import quote

        names = [n for n in batch.schema.names if n in self._types]
        absent = [n for n in batch.schema.names if n not in self._types]
        if absent:  # dropping them would load rows without values the run read (PostgreSQL's COPY refuses too)
            raise WriterError(f"{self.target_key} has no column(s) {absent} of the data being loaded; it was made "
                              "for other rows: load into a new table or drop this one")
        columns = []
        for n in names:
            try:
                columns.append(ch_values(batch.column(batch.schema.get_field_index(n)).to_pylist(), self._types[n]))
            except ValueError as exc:  # a value the column cannot hold fails the run, never becomes another row
                raise WriterError(f"column {n!r} of {self.target_key}: {exc}") from exc
        self._exec(f"INSERT INTO {self._ref(table)} ({', '.join(quote(n) for n in names)}) VALUES", columns,
                   columnar=True)

    def _finish(self) -> None:
        if self.mode != "replace":
            return
        if self._recorded(f"{self.run_id}:replace"):
            self._exec(f"DROP TABLE IF EXISTS {self._ref(self.staging)}")
            return
        self._swap()
        self._record(f"{self.run_id}:replace", self.rows_written)

    def _swap(self) -> None:
        from clickhouse_driver.errors import ServerException

        try:
            self._exec(f"EXCHANGE TABLES {self._ref()} AND {self._ref(self.staging)}")
            self._exec(f"DROP TABLE {self._ref(self.staging)}")
            return
        except ServerException:
            pass  # no EXCHANGE before 20.x / Atomic databases: one RENAME statement moves both names
        old = f"{self.name}__old_{_short(self.run_id)}"
        self._exec(f"DROP TABLE IF EXISTS {self._ref(old)}")
        self._exec(f"RENAME TABLE {self._ref()} TO {self._ref(old)}, {self._ref(self.staging)} TO {self._ref()}")
        self._exec(f"DROP TABLE {self._ref(old)}")


def ch_values(values: list, ch_type: str) -> list:
    """Python values the native protocol accepts for ``ch_type`` (text into String, numbers as needed)."""
    from services.connectors.clickhouse import unwrap

    convert = _ch_converter(unwrap(ch_type)[0])
    return values if convert is None else [None if v is None else convert(v) for v in values]


def _ch_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(jsonable(v), ensure_ascii=False) if isinstance(v, (dict, list)) else str(jsonable(v))


def _ch_decimal(v: Any):
    import decimal

    return v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))


def _ch_day(base: str):
    from services.connectors.typemap import CLICKHOUSE_DATE_RANGE, clickhouse_holds

    def check(v: Any):
        # The driver would store an earlier or later day as 1970-01-01: other data than the source's.
        if not clickhouse_holds(v):
            low, high = CLICKHOUSE_DATE_RANGE
            raise ValueError(f"{v} is outside what ClickHouse {base} can hold ({low}..{high}); the target column "
                             "must be String (or the value filtered out) to keep it")
        return v
    return check


def _ch_converter(base: str):
    if base == "String":
        return _ch_text
    if base == "Date" or base.startswith("DateTime"):
        return _ch_day(base)
    if base.startswith("Decimal"):
        return _ch_decimal
    if re.match(r"U?Int\d+$", base):
        return int  # booleans are UInt8 on 18.16
    if base.startswith("Float"):
        return float
    return None


# ================================================================ SQLite

class SQLiteWriter(Writer):
    """One transaction per batch with the key in ``aietl_loaded_batches``; replace swaps in one transaction."""

    def __init__(self, conn, table: str, **kw):
        super().__init__(conn, table, **kw)
        self.name = table.split(".")[-1]
        self.staging = f"{self.name}__stg_{_short(self.run_id)}"
        self._db = None

    @property
    def db(self):
        if self._db is None:
            import sqlite3

            path = Path(self.conn.param("path")).expanduser()
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)  # explicit BEGIN/COMMIT
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _tx(self):
        from contextlib import contextmanager

        @contextmanager
        def tx():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        return tx()

    def _prepare(self, schema) -> None:
        with self._tx():
            self.db.execute("CREATE TABLE IF NOT EXISTS aietl_loaded_batches (target TEXT NOT NULL, "
                            "batch_key TEXT NOT NULL, rows INTEGER, PRIMARY KEY (target, batch_key))")
            for stmt in self.setup_sql:
                self.db.execute(stmt)
            self._create(schema)
            if self.mode == "merge":
                cols = ", ".join(_sq(k) for k in self.keys)
                self.db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {_sq(self.name + '_aietl_merge_key')} "
                                f"ON {_sq(self.name)} ({cols})")
            if self.mode == "replace":
                self._done = self._recorded(f"{self.run_id}:replace")
                self.db.execute(f"DROP TABLE IF EXISTS {_sq(self.staging)}")
                self.db.execute(f"CREATE TABLE {_sq(self.staging)} AS SELECT * FROM {_sq(self.name)} WHERE 0")

    def _create(self, schema) -> None:
        if self.ddl:
            self.db.execute(self.ddl)
            return
        if schema is None:
            return
        from services.connectors.typemap import from_arrow

        cols = ", ".join(f"{_sq(f.name)} {_sqlite_type(from_arrow(f.type))}" for f in schema)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {_sq(self.name)} ({cols})")

    def _recorded(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM aietl_loaded_batches WHERE target = ? AND batch_key = ?",
                               (self.name, key)).fetchone() is not None

    def _claim(self, key: str, rows: int) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO aietl_loaded_batches VALUES (?, ?, ?)", (self.name, key, rows))
        return cur.rowcount == 1

    def _write(self, batch, key: str) -> int:
        names = batch.schema.names
        rows = [tuple(_sqlite_value(r[n]) for n in names) for r in batch.to_pylist()]
        cols, marks = ", ".join(_sq(n) for n in names), ", ".join("?" * len(names))
        table = self.staging if self.mode == "replace" else self.name
        sql = f"INSERT INTO {_sq(table)} ({cols}) VALUES ({marks})"
        if self.mode == "merge":
            updates = ", ".join(f"{_sq(c)} = excluded.{_sq(c)}" for c in names if c not in self.keys)
            sql += f" ON CONFLICT ({', '.join(_sq(k) for k in self.keys)}) " + \
                   (f"DO UPDATE SET {updates}" if updates else "DO NOTHING")
        with self._tx():
            if self.mode != "replace" and not self._claim(key, len(rows)):
                return 0
            self.db.executemany(sql, rows)
        return len(rows)

    def _finish(self) -> None:
        if self.mode != "replace":
            return
        with self._tx():
            if not self._claim(f"{self.run_id}:replace", self.rows_written):
                self.db.execute(f"DROP TABLE IF EXISTS {_sq(self.staging)}")
                return
            self.db.execute(f"DROP TABLE IF EXISTS {_sq(self.name)}")
            self.db.execute(f"ALTER TABLE {_sq(self.staging)} RENAME TO {_sq(self.name)}")


def _sq(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_type(inferred: str) -> str:
    if inferred.startswith(("int", "bool")):
        return "INTEGER"
    if inferred.startswith(("float", "decimal")):
        return "NUMERIC"
    return "BLOB" if inferred == "bytes" else "TEXT"


def _sqlite_value(v: Any) -> Any:
    if v is None or isinstance(v, (int, float, str, bytes)):
        return v
    return json.dumps(jsonable(v)) if isinstance(v, (dict, list)) else str(jsonable(v))


# ================================================================ files

class FileWriter(Writer):
    """CSV, JSON lines or Parquet in the connection's folder, written to a temp file and renamed in."""

    def __init__(self, conn, table: str, *, fmt: Optional[str] = None, **kw):
        super().__init__(conn, table, **kw)
        if self.mode == "merge":
            raise WriterError("file targets support append and replace")
        from services.executor.readers import file_format, folder_path

        self.path = folder_path(conn, table)
        self.fmt = file_format(self.path, fmt)
        self.tmp = self.path.with_name(f".{self.path.name}.{_short(self.run_id)}.tmp")
        self.sidecar = self.path.with_name(f".{self.path.name}.aietl-runs")
        self._sink = None
        self._schema = None

    def _prepare(self, schema) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done = self.sidecar.exists() and self.run_id in self.sidecar.read_text().split()

    def _write(self, batch, key: str) -> int:
        if self._sink is None:
            self._schema = batch.schema
            self._sink = self._open(self.tmp, batch.schema, header=True)
        self._sink.write(batch.cast(self._schema) if batch.schema != self._schema else batch)
        return batch.num_rows

    def _open(self, path: Path, schema, header: bool):
        return {"csv": _CsvSink, "jsonl": _JsonlSink, "parquet": _ParquetSink}[self.fmt](path, schema, header)

    def _finish(self) -> None:
        if self._sink is None:
            return  # no rows: nothing to add or to replace with
        self._sink.close()
        if self.mode == "append" and self.path.exists():
            self._append_existing()
        os.replace(self.tmp, self.path)  # atomic: readers see the old file or the new one
        with self.sidecar.open("a") as fh:
            fh.write(self.run_id + "\n")

    def _append_existing(self) -> None:
        """New file = old content + this run's, then renamed over the old one (no half-appended file)."""
        merged = self.tmp.with_suffix(".merged")
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            old = pq.ParquetFile(self.path)
            sink = _ParquetSink(merged, old.schema_arrow, True)
            for src in (old, pq.ParquetFile(self.tmp)):
                for b in src.iter_batches():
                    sink.write(b.cast(old.schema_arrow))
            sink.close()
        else:
            with merged.open("wb") as out, self.path.open("rb") as old, self.tmp.open("rb") as new:
                _copy_stream(old, out)
                if self.fmt == "csv":
                    new.readline()  # the header is already in the old file
                _copy_stream(new, out)
        os.replace(merged, self.tmp)

    def close(self) -> None:
        if self._sink is not None and not self._sink.closed:
            self._sink.close()
        if self.tmp.exists() and not self._done:
            self.tmp.unlink()


def _copy_stream(src, dst) -> None:
    import shutil

    shutil.copyfileobj(src, dst, 1 << 20)


class _CsvSink:
    def __init__(self, path: Path, schema, header: bool):
        import pyarrow.csv as pcsv

        self.closed = False
        self._fh = path.open("wb")
        self._writer = pcsv.CSVWriter(self._fh, _csv_schema(schema), write_options=pcsv.WriteOptions(
            include_header=header, quoting_style="needed"))

    def write(self, batch) -> None:
        self._writer.write_batch(nested_to_json(batch))

    def close(self) -> None:
        self._writer.close()
        self._fh.close()
        self.closed = True


def _csv_schema(schema):
    import pyarrow as pa
    import pyarrow.types as at

    return pa.schema([pa.field(f.name, pa.string()) if at.is_nested(f.type) else f for f in schema])


class _JsonlSink:
    def __init__(self, path: Path, schema, header: bool):
        self.closed = False
        self._fh = path.open("w", encoding="utf-8")

    def write(self, batch) -> None:
        self._fh.write("".join(dumps_row(r) + "\n" for r in batch.to_pylist()))

    def close(self) -> None:
        self._fh.close()
        self.closed = True


class _ParquetSink:
    def __init__(self, path: Path, schema, header: bool):
        import pyarrow.parquet as pq

        self.closed = False
        self._writer = pq.ParquetWriter(path, schema)

    def write(self, batch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()
        self.closed = True


# ================================================================ Kafka

class KafkaWriter(Writer):
    """One JSON message per row (key: the merge keys' values, if any); flushed at the end of each batch."""

    def __init__(self, conn, topic: str, **kw):
        super().__init__(conn, topic, **kw)
        if self.mode != "append":
            raise WriterError("a Kafka topic is appended to")
        self._producer = None

    def _prepare(self, schema) -> None:
        from confluent_kafka import Producer

        from services.connectors.kafka_topics import client_config

        self._producer = Producer({**client_config(self.conn), "enable.idempotence": True, "linger.ms": 20})

    def _write(self, batch, key: str) -> int:
        for row in batch.to_pylist():
            msg_key = "|".join(str(row.get(k)) for k in self.keys) if self.keys else None
            self._producer.produce(self.table, dumps_row(row).encode(), key=msg_key,
                                   headers=[("aietl-batch", key.encode())])
            self._producer.poll(0)
        left = self._producer.flush(30)
        if left:
            raise WriterError(f"{left} messages not delivered to {self.table}")
        return batch.num_rows


# ================================================================ factory

def open_writer(conn, target: dict, *, run_id: str, artifacts: Optional[dict] = None) -> Writer:
    """The writer for a spec's ``target`` (dict form) on ``conn``; DDL and setup SQL from the draft."""
    artifacts = artifacts or {}
    kind = target["kind"]
    kw = dict(mode=target.get("load_mode", "append"), keys=target.get("keys") or (), run_id=run_id,
              ddl=artifacts.get("target_ddl"), setup_sql=artifacts.get("target_setup_sql") or ())
    if kind == "postgres":
        return PostgresWriter(conn, target["table"], **kw)
    if kind == "clickhouse":
        return ClickHouseWriter(conn, target["table"], **kw)
    if kind == "sqlite":
        return SQLiteWriter(conn, target["table"], **kw)
    if kind == "file":
        return FileWriter(conn, target["path"], fmt=target.get("format"), **kw)
    if kind == "kafka":
        return KafkaWriter(conn, target["topic"], **kw)
    raise WriterError(f"{kind} is not a target kind")
