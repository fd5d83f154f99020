"""Column type mapping between PostgreSQL, ClickHouse, DuckDB, Arrow and the types inferred from files.

Every type is parsed into a small canonical form (:class:`Canon`) and rendered for the target engine, so
each pair of engines shares one table. ClickHouse output stays compatible with the 18.16 server of the
local stack: no Map, no DateTime64, no LowCardinality, no Bool (booleans are UInt8); Decimal(p, s) with
p <= 38 and Array(Nullable(T)) are supported there (checked against the real server).

Dialects: ``postgres``, ``clickhouse``, ``duckdb``, ``arrow`` (pyarrow's type strings), ``sqlite`` and ``inferred``
(what :mod:`services.connectors.files` reports: int, float, decimal(p,s), bool, date, timestamp, text,
json, array<T>, ...).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Optional

DIALECTS = ("postgres", "clickhouse", "duckdb", "arrow", "sqlite", "inferred")
MAX_DECIMAL = 38  # ClickHouse Decimal128, DuckDB and Arrow decimal128 all stop here
# Unconstrained NUMERIC has no fixed precision; this is the widest fixed form (the builtin SQL generator
# uses the same, so generated DDL and introspection agree).
DEFAULT_DECIMAL = (38, 9)


# ClickHouse 18.16 stores Date as unsigned days and DateTime as unsigned seconds since 1970-01-01 (its
# date tables stop in 2105): an earlier or later value has no representation there, and the driver turns
# it into 1970-01-01 without a word. Days outside this range must travel as text ('YYYY-MM-DD').
CLICKHOUSE_DATE_RANGE = (dt.date(1970, 1, 1), dt.date(2105, 12, 31))


def clickhouse_holds(value: Any) -> bool:
    """Whether a date, datetime or ISO text ``value`` fits ClickHouse 18.16's Date and DateTime."""
    day = _day_of(value)
    return day is None or CLICKHOUSE_DATE_RANGE[0] <= day <= CLICKHOUSE_DATE_RANGE[1]


def clickhouse_range_fits(low: Any, high: Any) -> bool:
    """Whether every value between ``low`` and ``high`` (a column's real min and max) fits a ClickHouse date."""
    return clickhouse_holds(low) and clickhouse_holds(high)


def _day_of(value: Any) -> Optional[dt.date]:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.date()
    if isinstance(value, dt.date):
        return value
    m = re.match(r"\s*(-?\d{1,6})-(\d{2})-(\d{2})", value) if isinstance(value, str) else None
    if not m:
        return None  # not a date: nothing to say about its range
    year = int(m.group(1))
    if year < 1:
        return dt.date.min
    if year > 9999:
        return dt.date.max
    try:
        return dt.date(year, int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


class TypeMapError(ValueError):
    """An engine or dialect name that is not supported."""


@dataclass(frozen=True)
class Canon:
    kind: str  # bool int8..int64 uint8..uint64 float32 float64 decimal string date timestamp timestamptz
    #            time interval uuid json bytes array
    precision: Optional[int] = None  # decimal only; None = unconstrained
    scale: Optional[int] = None
    item: Optional["Canon"] = None  # array only
    known: bool = True  # False when the name was not recognised (mapped to string)


# ---------------------------------------------------------------- parsing

_COMMON = {
    "bool": "bool", "boolean": "bool",
    "smallint": "int16", "int2": "int16", "int16": "int16", "short": "int16",
    "integer": "int32", "int4": "int32", "int32": "int32", "serial": "int32", "serial4": "int32",
    "smallserial": "int16", "mediumint": "int32", "signed": "int32",
    "bigint": "int64", "int64": "int64", "bigserial": "int64", "serial8": "int64", "long": "int64",
    "uint8": "uint8", "utinyint": "uint8", "uint16": "uint16", "usmallint": "uint16",
    "uint32": "uint32", "uinteger": "uint32", "uint64": "uint64", "ubigint": "uint64",
    "real": "float32", "float4": "float32", "float32": "float32", "halffloat": "float32", "float16": "float32",
    "double": "float64", "double precision": "float64", "float8": "float64", "float64": "float64",
    "date": "date", "date32": "date", "date64": "date", "date32[day]": "date", "date64[ms]": "date",
    "uuid": "uuid", "interval": "interval",
    "json": "json", "jsonb": "json", "hstore": "json", "object": "json", "struct": "json", "map": "json",
    "bytea": "bytes", "blob": "bytes", "binary": "bytes", "large_binary": "bytes", "varbinary": "bytes",
    "bytes": "bytes",
}
# int8 / int / float / tinyint mean different widths in different engines.
_BY_DIALECT = {
    "postgres": {"int8": "int64", "int": "int32", "float": "float64", "money": "decimal"},
    "clickhouse": {"int8": "int8", "int": "int32", "float": "float32", "tinyint": "int8"},
    "duckdb": {"int8": "int64", "int": "int32", "float": "float32", "tinyint": "int8", "int1": "int8"},
    "arrow": {"int8": "int8", "int": "int64", "float": "float32", "double": "float64"},
    "sqlite": {"int8": "int64", "int": "int64", "integer": "int64", "float": "float64", "real": "float64",
               "double": "float64"},
    "inferred": {"int8": "int8", "int": "int64", "integer": "int64", "float": "float64"},
}
_STRING_NAMES = ("text", "varchar", "character varying", "char", "character", "bpchar", "string", "utf8",
                 "large_string", "large_utf8", "fixedstring", "name", "citext", "enum", "enum8", "enum16",
                 "xml", "inet", "cidr", "macaddr", "macaddr8", "ipv4", "ipv6", "tsvector", "bit",
                 "bit varying", "varbit", "nvarchar", "clob", "null", "nothing")


def parse(type_name: str, dialect: str) -> Canon:
    """Canonical form of ``type_name`` as ``dialect`` spells it."""
    _check_dialect(dialect)
    t = " ".join(str(type_name).strip().lower().split())
    wrapped = re.fullmatch(r"(?:nullable|lowcardinality)\((.*)\)", t)
    if wrapped:
        return parse(wrapped.group(1), dialect)
    item = _array_item(t, dialect)
    if item is not None:
        return Canon("array", item=parse(item, dialect))
    return _scalar(t, dialect)


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise TypeMapError(f"unknown type dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")


def _array_item(t: str, dialect: str) -> Optional[str]:
    patterns = [r"array\((.*)\)", r"array<(.*)>", r"(?:large_)?list<(?:item:\s*)?(.*)>", r"(.*?)(?:\[\d*\])+"]
    if dialect == "postgres":
        patterns.append(r"_(\w+)")  # udt_name spelling of arrays: _int4, _text
    if re.match(r"(date\d\d|timestamp|time\d\d|duration|fixed_size_binary)\[", t):
        return None  # Arrow's unit/width brackets, not array dimensions
    for pattern in patterns:
        m = re.fullmatch(pattern, t)
        if m:
            return m.group(1)
    return None


def _scalar(t: str, dialect: str) -> Canon:
    return (_decimal(t, dialect) or _temporal(t) or _float_p(t, dialect)
            or _named(re.sub(r"\s*\(.*\)$", "", t), dialect))


def _decimal(t: str, dialect: str) -> Optional[Canon]:
    m = re.fullmatch(r"(?:numeric|decimal|decimal128|decimal256)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", t)
    if m:
        return Canon("decimal", int(m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"(numeric|decimal|decimal32|decimal64|decimal128|decimal256)\s*\(\s*(\d+)\s*\)", t)
    if m and m.group(1) in ("numeric", "decimal"):
        return Canon("decimal", int(m.group(2)), 0)
    if m:  # ClickHouse DecimalNN(S): the precision is the width's maximum
        width = {"decimal32": 9, "decimal64": 18, "decimal128": 38, "decimal256": 76}[m.group(1)]
        return Canon("decimal", width, int(m.group(2)))
    if t in ("numeric", "decimal"):
        return Canon("decimal")
    if t == "money" and dialect == "postgres":
        return Canon("decimal", 19, 2)
    if t == "hugeint":
        return Canon("decimal", 38, 0)
    return None


def _temporal(t: str) -> Optional[Canon]:
    if re.fullmatch(r"(timestamp(\(\d\))? with time zone|timestamptz|timestamp\[\w+, tz=.+\]"
                    r"|timestamp with time zone|datetime(64)?\(.*'.+'\))", t):
        return Canon("timestamptz")
    if re.fullmatch(r"(timestamp(\(\d\))?( without time zone)?|timestamp_(s|ms|ns)|timestamp\[\w+\]"
                    r"|datetime|datetime(64)?\(\d\)|smalldatetime)", t):
        return Canon("timestamp")
    if re.fullmatch(r"(time(\(\d\))?( with(out)? time zone)?|timetz|time(32|64)\[\w+\])", t):
        return Canon("time")
    return None


def _float_p(t: str, dialect: str) -> Optional[Canon]:
    m = re.fullmatch(r"float\s*\(\s*(\d+)\s*\)", t)
    if m and dialect == "postgres":  # float(p): PostgreSQL picks real up to 24 bits of mantissa
        return Canon("float32" if int(m.group(1)) <= 24 else "float64")
    return None


def _named(base: str, dialect: str) -> Canon:
    kind = _BY_DIALECT[dialect].get(base) or _COMMON.get(base)
    if kind == "decimal":
        return Canon("decimal", 19, 2)
    if kind:
        return Canon(kind)
    if base.startswith(("struct<", "map<", "tuple", "nested", "dictionary<values=")):
        value = re.match(r"dictionary<values=([^,]+)", base)
        return parse(value.group(1), dialect) if value else Canon("json")
    if base in _STRING_NAMES or base.startswith(("varchar", "char", "fixedstring", "enum", "fixed_size_binary")):
        return Canon("bytes") if base.startswith("fixed_size_binary") else Canon("string")
    if dialect == "sqlite" and "int" in base:
        return Canon("int64")  # SQLite's type affinity: any declared name containing INT is an integer
    return Canon("string", known=False)


# ---------------------------------------------------------------- rendering

_CH = {"bool": "UInt8", "int8": "Int8", "int16": "Int16", "int32": "Int32", "int64": "Int64", "uint8": "UInt8",
       "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64", "float32": "Float32", "float64": "Float64",
       "string": "String", "date": "Date", "timestamp": "DateTime", "timestamptz": "DateTime",
       "time": "String", "interval": "String", "uuid": "UUID", "json": "String", "bytes": "String"}
_PG = {"bool": "boolean", "int8": "smallint", "int16": "smallint", "int32": "integer", "int64": "bigint",
       "uint8": "smallint", "uint16": "integer", "uint32": "bigint", "uint64": "numeric(20,0)",
       "float32": "real", "float64": "double precision", "string": "text", "date": "date",
       "timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
       "time": "time without time zone", "interval": "interval", "uuid": "uuid", "json": "jsonb",
       "bytes": "bytea"}
_DUCK = {"bool": "BOOLEAN", "int8": "TINYINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT",
         "uint8": "UTINYINT", "uint16": "USMALLINT", "uint32": "UINTEGER", "uint64": "UBIGINT",
         "float32": "FLOAT", "float64": "DOUBLE", "string": "VARCHAR", "date": "DATE",
         "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ", "time": "TIME", "interval": "INTERVAL",
         # JSON as VARCHAR: the JSON type needs DuckDB's json extension, which may be absent offline.
         "uuid": "UUID", "json": "VARCHAR", "bytes": "BLOB"}
_INFERRED = {"int64": "int", "float64": "float", "string": "text"}


def _decimal_args(c: Canon) -> Optional[tuple[int, int]]:
    """(precision, scale) a fixed decimal can hold, or None when only a string is lossless."""
    if c.precision is None:
        return DEFAULT_DECIMAL
    if c.precision > MAX_DECIMAL:
        return None
    return c.precision, min(c.scale or 0, c.precision)


def render_clickhouse(c: Canon, nullable: bool = False, item_nullable: bool = False) -> str:
    if c.kind == "array":
        # ClickHouse has no Nullable(Array(...)): a NULL array is loaded as an empty one.
        return f"Array({render_clickhouse(c.item, item_nullable, item_nullable)})"  # type: ignore[arg-type]
    if c.kind == "decimal":
        args = _decimal_args(c)
        base = f"Decimal({args[0]}, {args[1]})" if args else "String"
    else:
        base = _CH[c.kind]
    return f"Nullable({base})" if nullable else base


def render_postgres(c: Canon) -> str:
    if c.kind == "array":
        item = c.item
        # PostgreSQL arrays are rectangular; arrays of arrays (ragged in other engines) become jsonb.
        return "jsonb" if item is None or item.kind in ("array", "json") else f"{render_postgres(item)}[]"
    if c.kind == "decimal":
        return "numeric" if c.precision is None else f"numeric({c.precision},{c.scale or 0})"
    return _PG[c.kind]


def render_duckdb(c: Canon) -> str:
    if c.kind == "array":
        return f"{render_duckdb(c.item)}[]"  # type: ignore[arg-type]
    if c.kind == "decimal":
        args = _decimal_args(c)
        return f"DECIMAL({args[0]},{args[1]})" if args else "VARCHAR"
    return _DUCK[c.kind]


def render_inferred(c: Canon) -> str:
    if c.kind == "array":
        return f"array<{render_inferred(c.item)}>"  # type: ignore[arg-type]
    if c.kind == "decimal":
        return "decimal" if c.precision is None else f"decimal({c.precision},{c.scale or 0})"
    return _INFERRED.get(c.kind, c.kind)


def arrow_type(c: Canon) -> Any:
    """The pyarrow DataType for ``c``."""
    import pyarrow as pa  # imported here: mapping names must not need pyarrow

    if c.kind == "array":
        return pa.list_(arrow_type(c.item))  # type: ignore[arg-type]
    if c.kind == "decimal":
        args = _decimal_args(c)
        return pa.decimal128(*args) if args else pa.string()
    simple = {"bool": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(),
              "int64": pa.int64(), "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(),
              "uint64": pa.uint64(), "float32": pa.float32(), "float64": pa.float64(), "date": pa.date32(),
              "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", tz="UTC"),
              "time": pa.time64("us"), "bytes": pa.binary()}
    return simple.get(c.kind, pa.string())  # string, uuid, json, interval travel as text


def render(c: Canon, engine: str, nullable: bool = False) -> str:
    """``c`` spelled for ``engine``; arrow gives pyarrow's type string."""
    if engine == "clickhouse":
        return render_clickhouse(c, nullable)
    if engine == "postgres":
        return render_postgres(c)
    if engine == "duckdb":
        return render_duckdb(c)
    if engine == "inferred":
        return render_inferred(c)
    if engine == "arrow":
        return str(arrow_type(c))
    raise TypeMapError(f"unknown engine {engine!r}; expected clickhouse, postgres, duckdb or arrow")


# ---------------------------------------------------------------- the public shortcuts

def to_clickhouse(pg_type: str, nullable: bool = False, item_nullable: bool = False) -> str:
    """ClickHouse column type for a PostgreSQL type; nullable columns become Nullable(T)."""
    return render_clickhouse(parse(pg_type, "postgres"), nullable, item_nullable)


def to_postgres(ch_type: str) -> str:
    """PostgreSQL column type for a ClickHouse type (Nullable/LowCardinality wrappers are dropped)."""
    return render_postgres(parse(ch_type, "clickhouse"))


def to_duckdb(type_name: str, dialect: str = "postgres") -> str:
    return render_duckdb(parse(type_name, dialect))


def to_arrow(type_name: str, dialect: str = "postgres") -> Any:
    return arrow_type(parse(type_name, dialect))


def from_inferred(file_type: str, engine: str, nullable: bool = False) -> str:
    """Column type for ``engine`` (clickhouse, postgres, duckdb, arrow) of a type inferred from a file."""
    return render(parse(file_type, "inferred"), engine, nullable)


def convert(type_name: str, source: str, target: str, nullable: bool = False) -> str:
    """``type_name`` as spelled in dialect ``source``, spelled for ``target``."""
    return render(parse(type_name, source), target, nullable)


def from_arrow(dt: Any) -> str:
    """The inferred-dialect name of a pyarrow DataType (for Parquet columns)."""
    return render_inferred(_canon_of_arrow(dt))


def _canon_of_arrow(dt: Any) -> Canon:
    import pyarrow.types as at

    if at.is_list(dt) or at.is_large_list(dt) or at.is_fixed_size_list(dt):
        return Canon("array", item=_canon_of_arrow(dt.value_type))
    if at.is_dictionary(dt):
        return _canon_of_arrow(dt.value_type)
    if at.is_decimal(dt):
        return Canon("decimal", dt.precision, dt.scale)
    if at.is_timestamp(dt):
        return Canon("timestamptz" if dt.tz else "timestamp")
    if at.is_struct(dt) or at.is_map(dt):
        return Canon("json")
    return parse(str(dt), "arrow")
