"""The spec compiler's SQL on the stack's own engines: PostgreSQL and ClickHouse 18.16.

The cases, data and plain-Python reference are those of tests/unit/test_spec_compiler.py. Tables are made
in a scratch schema / database per test (stack fixtures) and dropped afterwards. The extract runs through
the executor's real readers (server-side cursor, read-only ClickHouse settings) and the transform through
the executor's DuckDB session, so the rows compared are the rows a run would load; the target DDL is then
applied and the rows inserted, so it matches them.
"""
from __future__ import annotations

import pyarrow as pa
import pytest

from services.executor.readers import read_clickhouse, read_postgres
from services.executor.transform import Transformer
from services.spec_compiler import generate_sql
from tests.unit.test_spec_compiler import CASES, CUSTOMERS, NOW, ORDERS, TYPES, ch_load, reference, same_rows, \
    spec_for

pytestmark = pytest.mark.integration
TENANT = "t-spec-compiler"


def _extract_and_check(case: str, kind: str, ns: str, conn, reader) -> tuple[dict, list[dict]]:
    """Compiles ``case`` over the tables in ``ns``, runs extract + transform, compares with the reference."""
    spec = spec_for(case, kind, f"{ns}.orders", f"{ns}.customers", target={"kind": kind, "table": f"{ns}.out_rows"})
    out = generate_sql(spec, TYPES[kind]["orders"], {f"{ns}.customers": TYPES[kind]["customers"]})
    batches = list(reader(conn, out["extract_sql"]))
    rows = pa.Table.from_batches(batches).to_pylist() if batches else []
    if out["transform_sql"] and batches:
        with Transformer(out["transform_sql"]) as t:
            rows = t(pa.Table.from_batches(batches)).to_pylist()
    same_rows(spec, rows, reference(spec, {"orders": ORDERS, "customers": CUSTOMERS}, NOW))
    return out, rows


def _pg_load(db, schema: str) -> None:
    for table, rows in (("orders", ORDERS), ("customers", CUSTOMERS)):
        cols = TYPES["postgres"][table]
        db.execute(f"CREATE TABLE {schema}.{table} ({', '.join(f'{n} {t}' for n, t in cols)})")
        with db.cursor() as cur:
            cur.executemany(f"INSERT INTO {schema}.{table} VALUES ({', '.join('%s' for _ in cols)})",
                            [tuple(r[n] for n, _ in cols) for r in rows])


@pytest.mark.parametrize("case", sorted(CASES))
def test_postgres_source_gives_the_rows_the_spec_means(pg, pgdb, case):
    db, schema = pgdb
    _pg_load(db, schema)
    out, rows = _extract_and_check(case, "postgres", schema, pg, read_postgres)
    db.execute(out["target_ddl"])
    declared = [r[0] for r in db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'out_rows' "
        "ORDER BY ordinal_position", (schema,)).fetchall()]
    assert declared == list(rows[0])
    with db.cursor() as cur:
        cur.executemany(f"INSERT INTO {schema}.out_rows VALUES ({', '.join('%s' for _ in declared)})",
                        [tuple(r[c] for c in declared) for r in rows])
    assert db.execute(f"SELECT count(*) FROM {schema}.out_rows").fetchone()[0] == len(rows)


@pytest.mark.parametrize("case", sorted(CASES))
def test_clickhouse_18_16_source_gives_the_rows_the_spec_means(ch, chdb, case):
    client, db = chdb
    ch_load(client.execute, db, client.execute)
    out, rows = _extract_and_check(case, "clickhouse", db, ch, read_clickhouse)
    client.execute(out["target_ddl"])
    declared = [r[0] for r in client.execute(f"DESCRIBE TABLE {db}.out_rows")]
    assert declared == list(rows[0])
    client.execute(f"INSERT INTO {db}.out_rows ({', '.join(declared)}) VALUES",
                   [tuple(r[c] for c in declared) for r in rows])
    assert client.execute(f"SELECT count() FROM {db}.out_rows")[0][0] == len(rows)
