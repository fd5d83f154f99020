"""Type mapping between PostgreSQL, ClickHouse (18.16-compatible), DuckDB, Arrow and inferred file types."""
from __future__ import annotations

import pytest

from services.connectors import typemap
from services.connectors.typemap import convert, from_arrow, from_inferred, to_clickhouse, to_duckdb, to_postgres


@pytest.mark.parametrize("pg, ch", [
    ("bigint", "Int64"), ("integer", "Int32"), ("smallint", "Int16"), ("int8", "Int64"),
    ("numeric(12,2)", "Decimal(12, 2)"), ("numeric(12, 2)", "Decimal(12, 2)"), ("decimal(38,0)", "Decimal(38, 0)"),
    ("numeric", "Decimal(38, 9)"), ("numeric(60,2)", "String"), ("money", "Decimal(19, 2)"),
    ("text", "String"), ("character varying(20)", "String"), ("character(3)", "String"),
    ("timestamp without time zone", "DateTime"), ("timestamp(3) with time zone", "DateTime"),
    ("date", "Date"), ("boolean", "UInt8"), ("double precision", "Float64"), ("real", "Float32"),
    ("jsonb", "String"), ("json", "String"), ("uuid", "UUID"), ("bytea", "String"),
    ("time without time zone", "String"), ("interval", "String"), ("some_enum_type", "String"),
    ("integer[]", "Array(Int32)"), ("text[]", "Array(String)"), ("_int8", "Array(Int64)"),
    ("numeric(10,3)[]", "Array(Decimal(10, 3))"),
])
def test_postgres_to_clickhouse(pg, ch):
    assert to_clickhouse(pg) == ch


def test_nullable_columns_wrap_but_arrays_never_do():
    assert to_clickhouse("numeric(12,2)", nullable=True) == "Nullable(Decimal(12, 2))"
    assert to_clickhouse("text", nullable=True) == "Nullable(String)"
    # ClickHouse has no Nullable(Array(...)); element nullability is opt-in.
    assert to_clickhouse("integer[]", nullable=True) == "Array(Int32)"
    assert to_clickhouse("text[]", nullable=True, item_nullable=True) == "Array(Nullable(String))"


@pytest.mark.parametrize("pg", ["bigint", "numeric(12,2)", "timestamp with time zone", "jsonb", "text[]",
                                "boolean", "date", "uuid", "character varying(5)"])
def test_clickhouse_output_is_18_16_compatible(pg):
    for nullable in (False, True):
        ch = to_clickhouse(pg, nullable)
        assert not any(word in ch for word in ("Map(", "DateTime64", "LowCardinality", "Bool", "JSON", "Object"))


@pytest.mark.parametrize("ch, pg", [
    ("Int64", "bigint"), ("Int32", "integer"), ("Int16", "smallint"), ("Int8", "smallint"),
    ("UInt8", "smallint"), ("UInt32", "bigint"), ("UInt64", "numeric(20,0)"),
    ("Float32", "real"), ("Float64", "double precision"),
    ("Decimal(12, 2)", "numeric(12,2)"), ("Decimal64(4)", "numeric(18,4)"), ("Decimal32(2)", "numeric(9,2)"),
    ("String", "text"), ("FixedString(3)", "text"), ("Enum8('a' = 1, 'b' = 2)", "text"),
    ("Date", "date"), ("DateTime", "timestamp without time zone"),
    ("DateTime('UTC')", "timestamp with time zone"), ("UUID", "uuid"),
    ("Nullable(Int64)", "bigint"), ("LowCardinality(Nullable(String))", "text"),
    ("Array(Int32)", "integer[]"), ("Array(Nullable(String))", "text[]"), ("Array(Array(Int32))", "jsonb"),
])
def test_clickhouse_to_postgres(ch, pg):
    assert to_postgres(ch) == pg


@pytest.mark.parametrize("pg", ["bigint", "integer", "smallint", "numeric(12,2)", "text", "date", "uuid",
                                "timestamp without time zone", "double precision", "real", "integer[]"])
def test_postgres_clickhouse_round_trip(pg):
    assert to_postgres(to_clickhouse(pg)) == pg


@pytest.mark.parametrize("file_type, ch, pg, duck, arrow", [
    ("int", "Int64", "bigint", "BIGINT", "int64"),
    ("float", "Float64", "double precision", "DOUBLE", "double"),
    ("decimal(18,2)", "Decimal(18, 2)", "numeric(18,2)", "DECIMAL(18,2)", "decimal128(18, 2)"),
    ("bool", "UInt8", "boolean", "BOOLEAN", "bool"),
    ("date", "Date", "date", "DATE", "date32[day]"),
    ("timestamp", "DateTime", "timestamp without time zone", "TIMESTAMP", "timestamp[us]"),
    ("timestamptz", "DateTime", "timestamp with time zone", "TIMESTAMPTZ", "timestamp[us, tz=UTC]"),
    ("text", "String", "text", "VARCHAR", "string"),
    ("json", "String", "jsonb", "VARCHAR", "string"),
    ("array<int>", "Array(Int64)", "bigint[]", "BIGINT[]", "list<item: int64>"),
    ("array<text>", "Array(String)", "text[]", "VARCHAR[]", "list<item: string>"),
])
def test_from_inferred(file_type, ch, pg, duck, arrow):
    assert from_inferred(file_type, "clickhouse") == ch
    assert from_inferred(file_type, "postgres") == pg
    assert from_inferred(file_type, "duckdb") == duck
    assert from_inferred(file_type, "arrow") == arrow


def test_from_inferred_nullable_on_clickhouse():
    assert from_inferred("text", "clickhouse", nullable=True) == "Nullable(String)"
    assert from_inferred("array<text>", "clickhouse", nullable=True) == "Array(String)"


@pytest.mark.parametrize("pg, duck", [("bigint", "BIGINT"), ("numeric(12,2)", "DECIMAL(12,2)"),
                                      ("timestamp with time zone", "TIMESTAMPTZ"), ("jsonb", "VARCHAR"),
                                      ("text[]", "VARCHAR[]"), ("boolean", "BOOLEAN"), ("bytea", "BLOB")])
def test_postgres_to_duckdb(pg, duck):
    assert to_duckdb(pg) == duck


def test_duckdb_accepts_the_mapped_types():
    duckdb = pytest.importorskip("duckdb")
    types = [to_duckdb(t) for t in ("bigint", "numeric(12,2)", "timestamp", "jsonb", "text[]", "uuid", "date")]
    cols = ", ".join(f"c{i} {t}" for i, t in enumerate(types))
    with duckdb.connect() as db:
        db.execute(f"CREATE TABLE t ({cols})")
        assert [r[2] for r in db.execute("PRAGMA table_info('t')").fetchall()][:2] == ["BIGINT", "DECIMAL(12,2)"]


def test_arrow_types_both_ways():
    pa = pytest.importorskip("pyarrow")
    assert typemap.to_arrow("numeric(12,2)") == pa.decimal128(12, 2)
    assert typemap.to_arrow("integer[]") == pa.list_(pa.int32())
    assert typemap.to_arrow("Nullable(DateTime)", "clickhouse") == pa.timestamp("us")
    assert from_arrow(pa.int64()) == "int"
    assert from_arrow(pa.int32()) == "int32"
    assert from_arrow(pa.decimal128(12, 2)) == "decimal(12,2)"
    assert from_arrow(pa.timestamp("ms", tz="UTC")) == "timestamptz"
    assert from_arrow(pa.list_(pa.string())) == "array<text>"
    assert from_arrow(pa.struct([("a", pa.int8())])) == "json"
    assert from_arrow(pa.dictionary(pa.int32(), pa.string())) == "text"


def test_convert_and_sqlite_affinity():
    assert convert("Decimal(12, 2)", "clickhouse", "duckdb") == "DECIMAL(12,2)"
    assert convert("INTEGER", "sqlite", "clickhouse") == "Int64"  # SQLite integers are 64-bit
    assert convert("UNSIGNED BIG INT", "sqlite", "postgres") == "bigint"
    assert convert("int", "postgres", "clickhouse") == "Int32"


def test_unknown_dialect_or_engine_is_a_clear_error():
    with pytest.raises(typemap.TypeMapError, match="dialect"):
        convert("int", "oracle", "postgres")
    with pytest.raises(typemap.TypeMapError, match="engine"):
        from_inferred("int", "mysql")
    assert typemap.parse("geometry", "postgres").known is False
