"""The transform step: DuckDB SQL over the batch (relation ``batch``) and/or the sandboxed ``transform(batch)``.

DuckDB runs with the QA dry run's hardened configuration (no external access, no extension loading, one
thread, a memory cap) locked for the session, and each statement is interrupted after a timeout. The
Python function runs in the QA sandbox subprocess (rows in, rows out): fine for small batches, slow for
big ones, since every row is serialised twice.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

from services.executor.batches import records_to_batch

SQL_TIMEOUT_S = 60.0
PYTHON_TIMEOUT_S = 60.0
RELATION = "batch"


class TransformError(Exception):
    """The transform failed on a batch (SQL error, timeout, Python exception in the sandbox)."""


def _duckdb_config() -> dict:
    from services.agents.qa.dry_run import _DUCKDB_CONFIG

    # A run's batches are bigger than a dry run's sample: same hardening, a larger memory cap.
    return {**_DUCKDB_CONFIG, "memory_limit": "1GB"}


class Transformer:
    """One DuckDB session reused for every batch of a run (connecting per batch costs more than small SQL)."""

    def __init__(self, transform_sql: Optional[str] = None, python_code: Optional[str] = None,
                 sql_timeout_s: float = SQL_TIMEOUT_S, python_timeout_s: float = PYTHON_TIMEOUT_S):
        self.sql = transform_sql if transform_sql and transform_sql.strip() else None
        self.code = python_code if python_code and python_code.strip() else None
        self.sql_timeout_s, self.python_timeout_s = sql_timeout_s, python_timeout_s
        self._con = None

    @property
    def identity(self) -> bool:
        return self.sql is None and self.code is None

    def __call__(self, batch):
        out = batch
        if self.sql:
            out = self._run_sql(out)
        if self.code:
            out = self._run_python(out)
        return out

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> "Transformer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connection(self):
        if self._con is None:
            import duckdb

            self._con = duckdb.connect(":memory:", config=_duckdb_config())
            self._con.execute("SET lock_configuration = true")  # the SQL cannot re-enable external access
        return self._con

    def _run_sql(self, batch):
        import duckdb

        con = self._connection()
        con.register(RELATION, batch)
        fired = threading.Event()
        # A recursive CTE can run forever; interrupt() makes the running query raise.
        timer = threading.Timer(self.sql_timeout_s, lambda: (fired.set(), con.interrupt()))
        timer.start()
        try:
            rel = con.sql(self.sql)  # a relation streams to Arrow without the DB-API copy
            if rel is None:
                raise TransformError("transform SQL must be a query returning rows")
            return rel.to_arrow_table()
        except duckdb.Error as exc:
            if fired.is_set():
                raise TransformError(f"transform SQL timed out after {self.sql_timeout_s:g} s") from None
            raise TransformError(f"transform SQL failed: {type(exc).__name__}: {str(exc).strip()}") from None
        finally:
            timer.cancel()
            con.unregister(RELATION)

    def _run_python(self, data):
        from services.agents.qa.sandbox import run_transform

        result = run_transform(self.code, data.to_pylist(), timeout_s=self.python_timeout_s)
        if not result.ok:
            raise TransformError(f"transform(batch) failed: {result.error}")
        return records_to_batch(result.rows) if result.rows else _empty_like(data)


def _empty_like(data) -> Any:
    return data.slice(0, 0)


def apply_transform(batch, transform_sql: Optional[str] = None, python_code: Optional[str] = None):
    """``batch`` through the SQL, then the Python function; a RecordBatch or Table (the input when neither)."""
    with Transformer(transform_sql, python_code) as t:
        return t(batch)
