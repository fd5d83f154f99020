"""A CSV whose numeric columns have `NA` (or `N/A`, `null`, empty) gaps: the schema analyst types them as
numbers, QA's sample reads them as numbers, and a run lands numbers (NULL for the markers), not TEXT."""
import pytest

from services.agents.qa.dry_run import dry_run
from services.connectors import files as file_connector
from services.connectors.registry import Connection
from services.executor.plan import run_pipeline
from services.spec_compiler import generate_sql
from tests.integration.stack_fixtures import Registry

pytestmark = pytest.mark.integration
TENANT = "t-csv-na"
CSV = "id,city,score,visits,measured\n1,Oslo,1.5,3,2024-01-01\n2,NA,NA,NA,NA\n3,Rome,,7,2024-01-03\n" \
      "4,N/A,2.25,null,2024-01-04\n5,Oslo,3,NA,\n"


@pytest.fixture
def readings(tmp_path):
    (tmp_path / "readings.csv").write_text(CSV, encoding="utf-8")
    return Connection(TENANT, "fs", "file", {"folder": str(tmp_path)})


def test_na_gaps_keep_numeric_columns_numeric_from_schema_to_target(readings, pg, pgdb):
    db, schema = pgdb
    columns = [[c.name, c.type] for c in file_connector.table_schema(readings, "readings.csv")]
    assert dict(columns) == {"id": "int", "city": "text", "score": "float", "visits": "int", "measured": "date"}
    spec = {"source": {"kind": "file", "connection": "fs", "path": "readings.csv"},
            "target": {"kind": "postgres", "connection": "pg", "table": f"{schema}.readings"}}
    sql = generate_sql(spec, [tuple(c) for c in columns])
    assert "text" not in sql["target_ddl"].lower().replace("city text", "")  # only the city is text
    sample = file_connector.sample_rows(readings, "readings.csv", 10)
    assert dry_run(sample, sql["transform_sql"], None, spec=spec, source_columns=columns).ok

    totals = run_pipeline(spec, {"target_ddl": sql["target_ddl"]}, Registry(readings, pg), TENANT, run_id="na1",
                          cursor=None, batch_rows=2)
    assert totals.rows_written == 5
    types = dict(db.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                            "AND table_name = 'readings'", (schema,)).fetchall())
    assert types["score"] in ("real", "double precision") and types["visits"] in ("integer", "bigint")
    assert types["measured"] == "date" and types["city"] == "text"
    rows = db.execute(f"SELECT id, city, score, visits FROM {schema}.readings ORDER BY id").fetchall()
    assert rows == [(1, "Oslo", 1.5, 3), (2, None, None, None), (3, "Rome", None, 7), (4, None, 2.25, None),
                    (5, "Oslo", 3.0, None)]
    assert db.execute(f"SELECT avg(score) FROM {schema}.readings").fetchone()[0] == pytest.approx(6.75 / 3)
