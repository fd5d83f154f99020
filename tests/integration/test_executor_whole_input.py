"""A file source whose spec aggregates or ranks is transformed over its whole input, not batch by batch.

With more rows than one batch, a per-batch aggregate yields one group per batch and a per-batch top-N
keeps N rows of each batch; the executor must hand such a transform all of the input at once.
"""
from __future__ import annotations

import sqlite3
from collections import defaultdict

import pytest

from services.connectors.registry import Connection
from services.executor.plan import PlanError, run_pipeline, whole_input
from services.spec_compiler import generate_sql
from tests.integration.stack_fixtures import Registry

TENANT = "t-whole-input"
ROWS = [{"id": i, "category": "abc"[i % 3], "price": (i * 37) % 101} for i in range(1, 26)]


def _setup(tmp_path):
    (tmp_path / "items.csv").write_text("id,category,price\n" + "".join(
        f"{r['id']},{r['category']},{r['price']}\n" for r in ROWS))
    files = Connection(TENANT, "fs", "file", {"folder": str(tmp_path)})
    db = Connection(TENANT, "sq", "sqlite", {"path": str(tmp_path / "out.db")})
    return Registry(files, db)


def _run(tmp_path, spec: dict) -> list[tuple]:
    registry = _setup(tmp_path)
    columns = [["id", "bigint"], ["category", "text"], ["price", "bigint"]]
    art = generate_sql(spec, columns)
    artifacts = {"transform_sql": art.get("transform_sql"), "target_ddl": art.get("target_ddl")}
    run_pipeline(spec, artifacts, registry, TENANT, run_id="r1", batch_rows=4)  # 25 rows: 7 batches
    con = sqlite3.connect(tmp_path / "out.db")
    try:
        return con.execute(f"SELECT * FROM {spec['target']['table']}").fetchall()
    finally:
        con.close()


def _spec(**extra) -> dict:
    return {"source": {"kind": "file", "connection": "fs", "path": "items.csv"},
            "target": {"kind": "sqlite", "connection": "sq", "table": "out", "load_mode": "replace"}, **extra}


def test_an_aggregate_of_a_file_bigger_than_a_batch_has_one_row_per_group(tmp_path):
    got = _run(tmp_path, _spec(aggregate={"dimensions": ["category"],
                                          "measures": [{"fn": "sum", "column": "price", "alias": "total"}]}))
    want = defaultdict(int)
    for r in ROWS:
        want[r["category"]] += r["price"]
    assert sorted((c, int(t)) for c, t in got) == sorted(want.items())


def test_a_top_n_of_a_file_bigger_than_a_batch_keeps_n_rows_of_the_whole_file(tmp_path):
    got = _run(tmp_path, _spec(order_by=[{"column": "price", "descending": True}], limit=5))
    want = sorted(ROWS, key=lambda r: -r["price"])[:5]
    assert sorted(int(r[2]) for r in got) == sorted(r["price"] for r in want)
    assert len(got) == 5


def test_whole_input_is_bounded():
    import pyarrow as pa

    batches = iter([pa.record_batch({"x": list(range(10))})] * 3)
    with pytest.raises(PlanError, match="more than 25 rows"):
        list(whole_input(batches, max_rows=25))
    assert list(whole_input(iter([]))) == []
