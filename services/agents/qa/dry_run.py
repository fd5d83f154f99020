"""Dry run of a pipeline's transform on sample rows (DESIGN.md §5, qa-validator).

Order: static checks first (nothing runs if they fail), then the transform SQL in an
in-memory DuckDB over the sample registered as the relation ``batch``, then the
Python ``transform(batch)`` in the sandbox over the SQL's output (or the sample when
there is no SQL).
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import threading
import uuid
from dataclasses import dataclass, field

from services.agents.qa import Finding, has_errors
from services.agents.qa.python_rules import check_transform_code
from services.agents.qa.sandbox import run_transform
from services.agents.qa.sql_rules import TRANSFORM_RELATION, check_transform_sql

SAMPLE_SIZE = 10
SQL_TIMEOUT_S = 5.0

# Defence in depth next to check_transform_sql: no files, URLs, extensions or settings changes.
_DUCKDB_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "threads": 1,
    "memory_limit": "256MB",
}


@dataclass(frozen=True)
class DryRunResult:
    ok: bool
    rows_in: int
    rows_out: int
    columns: list[str] = field(default_factory=list)
    sample: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form for events (checks_json); sample values become strings where JSON has no type."""
        return {
            "ok": self.ok, "rows_in": self.rows_in, "rows_out": self.rows_out, "columns": list(self.columns),
            "sample": [{k: _jsonable(v) for k, v in row.items()} for row in self.sample],
            "findings": [f.__dict__.copy() for f in self.findings],
        }


def dry_run(extract_rows: list[dict], transform_sql: str | None, transform_code: str | None,
            limit: int = 100, spec: dict | None = None, source_columns: list | None = None,
            join_columns: dict | None = None, target_columns: list | None = None) -> DryRunResult:
    """Run the transform over the sample; with ``spec``, the result must also have the spec's shape
    (its output columns, numeric measures, at most one row per group, top-N), and with the target's
    ``target_columns`` ([name, type] of its DDL) its values must fit their types."""
    rows = list(extract_rows[:limit])
    findings = _static_findings(transform_sql, transform_code)
    if has_errors(findings):
        return _result(rows, [], [], findings)
    columns, out = _columns_of(rows), rows
    if transform_sql and transform_sql.strip():
        columns, out, sql_findings = run_transform_sql(transform_sql, out)
        findings += sql_findings
    if transform_code and transform_code.strip() and not has_errors(findings):
        out, py_findings = _run_python(transform_code, out)
        findings += py_findings
        columns = _columns_of(out)
    if has_errors(findings):
        return _result(rows, [], [], findings)
    findings += _shape_findings(out, columns)
    if spec is not None:
        findings += _spec_findings(spec, columns, rows, out, source_columns, join_columns, target_columns)
    return _result(rows, out, columns, findings)


def _spec_findings(spec: dict, columns: list[str], rows: list[dict], out: list[dict], source_columns, join_columns,
                   target_columns) -> list[Finding]:
    """The result against the spec: its shape, the rows its filters keep, values its target types hold."""
    from services.agents.qa.spec_checks import filter_findings, result_shape_findings, sample_range_findings

    if not rows:
        return []
    return (result_shape_findings(spec, columns, out, source_columns, join_columns)
            + filter_findings(spec, columns, out) + sample_range_findings(spec, target_columns or [], out))


def _static_findings(transform_sql: str | None, transform_code: str | None) -> list[Finding]:
    findings: list[Finding] = []
    if transform_sql and transform_sql.strip():
        findings += check_transform_sql(transform_sql, "duckdb")
    if transform_code and transform_code.strip():
        findings += check_transform_code(transform_code)
    return findings


def _result(rows_in: list[dict], rows_out: list[dict], columns: list[str], findings: list[Finding]) -> DryRunResult:
    return DryRunResult(
        ok=not has_errors(findings), rows_in=len(rows_in), rows_out=len(rows_out),
        columns=columns, sample=rows_out[:SAMPLE_SIZE], findings=findings,
    )


# ---------------------------------------------------------------- SQL (DuckDB)


def run_transform_sql(sql: str, rows: list[dict], *, timeout_s: float = SQL_TIMEOUT_S
                      ) -> tuple[list[str], list[dict], list[Finding]]:
    """Run ``sql`` over ``rows`` registered as ``batch``; returns (columns, rows, findings)."""
    if not rows:
        msg = "no sample rows: transform SQL was checked statically but not executed"
        return [], [], [Finding("dry-run-sql", "warning", msg, sql)]
    table, problem = _to_arrow(rows)
    if problem:
        return [], [], [Finding("dry-run-input", "error", problem)]
    import duckdb  # heavy; only when a dry run actually happens

    con = duckdb.connect(":memory:", config=_DUCKDB_CONFIG)
    try:
        con.register(TRANSFORM_RELATION, table)
        con.execute("SET lock_configuration = true")  # the query cannot turn external access back on
        return _execute(con, sql, timeout_s)
    except duckdb.Error as e:
        return [], [], [Finding("dry-run-sql", "error", f"transform SQL failed on the sample: {_duckdb_message(e)}", sql)]
    finally:
        con.close()


def _execute(con, sql: str, timeout_s: float) -> tuple[list[str], list[dict], list[Finding]]:
    # A recursive CTE can run forever; interrupt() makes the running query raise.
    fired = threading.Event()
    timer = threading.Timer(timeout_s, lambda: (fired.set(), con.interrupt()))
    timer.start()
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description or []]
        out = [dict(zip(columns, values)) for values in cur.fetchall()]
    except Exception:
        if fired.is_set():
            msg = f"transform SQL timed out after {timeout_s:g} s on the sample"
            return [], [], [Finding("dry-run-sql", "error", msg, sql)]
        raise
    finally:
        timer.cancel()
    return columns, out, []


def _to_arrow(rows: list[dict]):
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows), None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError) as e:
        return None, f"sample rows cannot be loaded as the relation batch (mixed or unsupported types?): {e}"


def _duckdb_message(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).strip()}"


# ---------------------------------------------------------------- Python (sandbox)


def _run_python(code: str, rows: list[dict]) -> tuple[list[dict], list[Finding]]:
    result = run_transform(code, rows)
    if not result.ok:
        return [], [Finding("dry-run-python", "error", f"transform(batch) failed on the sample: {result.error}")]
    return result.rows, []


# ---------------------------------------------------------------- output shape


def _columns_of(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _shape_findings(rows: list[dict], columns: list[str]) -> list[Finding]:
    out = []
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            out.append(Finding("dry-run-shape", "warning",
                               f"output row {i} lacks column(s) {missing}; every row should have the same columns"))
            break  # one example is enough to repair
    return out


def _jsonable(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, dt.timedelta)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return value
