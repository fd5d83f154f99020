"""Column types: source type names (PostgreSQL, ClickHouse, SQLite, Arrow/DuckDB) to target DDL types.

Types go through a small canonical form so every source/target pair shares one table. ClickHouse output
stays 18.16-compatible: no Map, no DateTime64, no Bool (booleans are UInt8), JSON as String.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Canon:
    kind: str  # int16 int32 int64 uint8 uint16 uint32 uint64 float32 float64 decimal string bool date
    #            timestamp uuid json bytes array
    precision: int = 0
    scale: int = 0
    item: Optional["Canon"] = None
    known: bool = True  # False when the source type name was not recognised (mapped to string)
    # A date or timestamp column's real min and max in the source (ISO text), when they were measured:
    # they decide whether ClickHouse 18.16's Date/DateTime (1970-01-01..2105) can hold its values.
    low: Optional[str] = None
    high: Optional[str] = None


def with_range(c: Canon, value_range) -> Canon:
    """``c`` with the source's measured (min, max) when it is a date or timestamp; else ``c``."""
    if c.kind not in ("date", "timestamp") or not value_range or len(value_range) != 2:
        return c
    low, high = (None if v is None else str(v) for v in value_range)
    return Canon(c.kind, c.precision, c.scale, c.item, c.known, low, high)


def clickhouse_holds(c: Canon) -> bool:
    """False when the measured range of a date/timestamp column leaves what ClickHouse 18.16 can store."""
    from services.connectors.typemap import clickhouse_range_fits

    return c.low is None and c.high is None or clickhouse_range_fits(c.low, c.high)


_INTS = {"smallint": "int16", "int2": "int16", "int16": "int16", "tinyint": "int16", "integer": "int32",
         "int": "int32", "int4": "int32", "int32": "int32", "serial": "int32", "mediumint": "int32",
         "bigint": "int64", "int64": "int64", "bigserial": "int64", "long": "int64", "uint8": "uint8",
         "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "utinyint": "uint8", "usmallint": "uint16",
         "uinteger": "uint32", "ubigint": "uint64"}
_FLOATS = {"real": "float32", "float4": "float32", "float32": "float32", "halffloat": "float32",
           "float16": "float32", "double": "float64", "double precision": "float64", "float8": "float64",
           "float64": "float64"}
_STRINGS = ("text", "varchar", "character varying", "char", "character", "bpchar", "string", "utf8",
            "large_string", "large_utf8", "fixedstring", "name", "citext", "enum8", "enum16", "enum", "null",
            "time", "interval", "inet", "cidr", "ipv4", "ipv6", "nvarchar", "clob")


def canonical(type_name: str, dialect: str) -> Canon:
    """Canonical form of a type as ``dialect`` spells it (postgres, clickhouse, sqlite or arrow/duckdb)."""
    t = " ".join(type_name.strip().lower().split())
    wrapped = re.fullmatch(r"(?:nullable|lowcardinality)\((.*)\)", t)
    if wrapped:
        return canonical(wrapped.group(1), dialect)
    item = _array_item(t)
    if item is not None:
        return Canon("array", item=canonical(item, dialect))
    return _scalar(t, dialect)


def _array_item(t: str) -> Optional[str]:
    m = (re.fullmatch(r"array\((.*)\)", t) or re.fullmatch(r"(?:large_)?list<(?:item:\s*)?(.*)>", t)
         or re.fullmatch(r"(.*)\[\]", t) or re.fullmatch(r"_(\w+)", t))  # _text: PostgreSQL's array type name
    return m.group(1) if m else None


def _scalar(t: str, dialect: str) -> Canon:
    m = re.fullmatch(r"(?:numeric|decimal|decimal128|decimal256)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", t)
    if m:
        return Canon("decimal", min(int(m.group(1)), 38), int(m.group(2) or 0))
    if t in ("numeric", "decimal"):
        return Canon("decimal", 38, 9)
    if t == "hugeint":
        return Canon("decimal", 38, 0)
    if t == "int8":  # PostgreSQL's int8 is bigint; elsewhere it is a byte
        return Canon("int64" if dialect == "postgres" else "int16")
    if t == "float":  # PostgreSQL's float is double precision; Arrow's is 32-bit
        return Canon("float64" if dialect in ("postgres", "sqlite") else "float32")
    base = re.sub(r"\s*\(.*\)$", "", t)
    return _named(base, dialect)


def _named(base: str, dialect: str) -> Canon:
    if base in _INTS:
        return Canon(_INTS[base])
    if base in _FLOATS:
        return Canon(_FLOATS[base])
    if base in ("bool", "boolean"):
        return Canon("bool")
    if base in ("date", "date32", "date64"):
        return Canon("date")
    if re.match(r"(timestamp|datetime|timestamptz)", base):
        return Canon("timestamp")
    if base == "uuid":
        return Canon("uuid")
    if re.match(r"(json|jsonb|struct|map|object|tuple|variant)", base):
        return Canon("json")
    if base in ("bytea", "binary", "blob", "large_binary", "varbinary", "bytes"):
        return Canon("bytes")
    if base in _STRINGS or base.startswith(("varchar", "char", "fixedstring", "enum")):
        return Canon("string")
    if dialect == "sqlite" and "int" in base:
        return Canon("int64")  # SQLite's type affinity: any name containing INT is an integer
    return Canon("string", known=False)


_CH = {"int16": "Int16", "int32": "Int32", "int64": "Int64", "uint8": "UInt8", "uint16": "UInt16",
       "uint32": "UInt32", "uint64": "UInt64", "float32": "Float32", "float64": "Float64", "string": "String",
       "bool": "UInt8", "date": "Date", "timestamp": "DateTime", "uuid": "UUID", "json": "String",
       "bytes": "String"}
_PG = {"int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT", "uint8": "SMALLINT", "uint16": "INTEGER",
       "uint32": "BIGINT", "uint64": "NUMERIC(20, 0)", "float32": "REAL", "float64": "DOUBLE PRECISION",
       "string": "TEXT", "bool": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP", "uuid": "UUID",
       "json": "JSONB", "bytes": "BYTEA"}


def to_clickhouse(c: Canon, nullable: bool = True) -> str:
    if c.kind == "array":
        return f"Array({to_clickhouse(c.item, nullable=False)})"  # type: ignore[arg-type]
    base = f"Decimal({c.precision}, {c.scale})" if c.kind == "decimal" else _CH[c.kind]
    if c.kind in ("date", "timestamp") and not clickhouse_holds(c):
        base = "String"  # ISO text keeps a day before 1970 that Date would turn into 1970-01-01
    return f"Nullable({base})" if nullable else base


def to_postgres(c: Canon) -> str:
    if c.kind == "array":
        inner = c.item
        return "JSONB" if inner is None or inner.kind in ("array", "json") else f"{to_postgres(inner)}[]"
    return f"NUMERIC({c.precision}, {c.scale})" if c.kind == "decimal" else _PG[c.kind]


def to_sqlite(c: Canon) -> str:
    if c.kind.startswith(("int", "uint")) or c.kind == "bool":
        return "INTEGER"
    return {"float32": "REAL", "float64": "REAL", "decimal": "NUMERIC", "bytes": "BLOB"}.get(c.kind, "TEXT")


def to_target(c: Canon, dialect: str, nullable: bool = True) -> str:
    if dialect == "clickhouse":
        return to_clickhouse(c, nullable)
    return to_postgres(c) if dialect == "postgres" else to_sqlite(c)
