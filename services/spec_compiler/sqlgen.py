"""``generate_sql``: a PipelineSpec (and, when known, the source columns) to runnable SQL.

Placement (why each piece goes where it goes):

* Filters on a database source are pushed down into the extract SELECT: less data crosses the wire.
* Aggregates on a database source are computed in the extract SELECT too. The executor moves data in
  bounded batches, and a per-batch GROUP BY in the transform would emit one partial row per group *per
  batch*; only the source sees all rows at once. (Aggregating a file or topic has no such place: it is
  done in the DuckDB transform and is exact only when the input fits one batch; a note says so.)
* Row-wise work (cleaning, PII masking) runs in the DuckDB transform over the batch relation ``batch``:
  it is source-independent and correct batch by batch. De-duplication there is per batch; the compiler
  pairs it with a merge load on the same key so duplicates across batches collapse as well.
* Incremental extracts carry ``WHERE <cursor> > %(cursor)s`` (``:cursor`` for SQLite) and ``ORDER BY
  <cursor>``; the executor binds ``cursor`` to the stored high-water mark, or runs ``extract_sql_initial``
  (no predicate) when there is none yet. PostgreSQL (psycopg) and ClickHouse (clickhouse-driver) both use
  pyformat parameters, so a literal ``%`` in these statements is doubled.

Every statement is parsed with sqlglot in its own dialect before it is returned. SQL text is written
here, not re-rendered by sqlglot: sqlglot would rewrite ``toStartOfMonth`` as ``dateTrunc``, which
ClickHouse 18.16 does not have.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Optional, Union

from services.domain.spec import DATABASE_KINDS, PipelineSpec

from .typemap import Canon, canonical, to_target

ColumnList = Optional[list[tuple[str, str]]]
EMAIL_REGEX = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_PLACEHOLDER = {"postgres": "%(cursor)s", "clickhouse": "%(cursor)s", "sqlite": ":cursor"}
_PERIOD_SQL = {
    "postgres": {"day": "CAST({c} AS DATE)", "week": "CAST(DATE_TRUNC('week', {c}) AS DATE)",
                 "month": "CAST(DATE_TRUNC('month', {c}) AS DATE)", "hour": "DATE_TRUNC('hour', {c})"},
    "duckdb": {"day": "CAST({c} AS DATE)", "week": "CAST(DATE_TRUNC('week', {c}) AS DATE)",
               "month": "CAST(DATE_TRUNC('month', {c}) AS DATE)", "hour": "DATE_TRUNC('hour', {c})"},
    "clickhouse": {"day": "toDate({c})", "week": "toMonday({c})", "month": "toStartOfMonth({c})",
                   "hour": "toStartOfHour({c})"},
    "sqlite": {"day": "DATE({c})", "week": "DATE({c}, 'weekday 0', '-6 days')",
               "month": "DATE({c}, 'start of month')", "hour": "STRFTIME('%Y-%m-%d %H:00:00', {c})"},
}
_RESERVED = frozenset("""all and any array as asc between by case cast check column constraint create cross current
default desc distinct do else end except false fetch for foreign from full grant group having in index inner
intersect interval into is join key left like limit natural not null offset on or order outer primary
references right select table then to true union unique user using values when where window with""".split())


class SqlGenerationError(ValueError):
    """The spec cannot be turned into SQL (e.g. it names a column the source does not have)."""


# --- small helpers ---------------------------------------------------------------------------------

def ident(name: str, dialect: str) -> str:
    """An identifier, quoted only when it has to be (mixed case, odd characters, reserved words)."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in _RESERVED:
        return name
    q = "`" if dialect == "clickhouse" else '"'
    return q + name.replace(q, q + q) + q


def table_ref(name: str, dialect: str) -> str:
    return ".".join(ident(part, dialect) for part in name.split("."))


def lit(value: Any, dialect: str) -> str:
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if dialect in ("postgres", "duckdb") else str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("'", "''")
    if dialect == "clickhouse":
        text = text.replace("\\", "\\\\")  # ClickHouse string literals treat backslash as an escape
    return f"'{text}'"


class Columns:
    """The source columns (when known) and how request words resolve to them."""

    def __init__(self, columns: ColumnList, source_kind: str):
        dialect = source_kind if source_kind in DATABASE_KINDS else "arrow"
        # An empty list (an empty topic, a file not there yet) tells nothing: treat it as unknown.
        self.known = bool(columns)
        self.types: dict[str, Canon] = {n: canonical(t, dialect) for n, t in (columns or [])}

    def resolve(self, word: str) -> str:
        if not self.known or word in self.types:
            return word
        lower = {n.lower(): n for n in self.types}
        for candidate in _variants(word.lower()):
            if candidate in lower:
                return lower[candidate]
        raise SqlGenerationError(f"column {word!r} is not among the source columns {sorted(self.types)}")

    def matching(self, pattern: str) -> list[str]:
        if not any(ch in pattern for ch in "*?["):
            return [self.resolve(pattern)]
        return [n for n in self.types if fnmatch.fnmatchcase(n.lower(), pattern.lower())]

    def type_of(self, name: str) -> Optional[Canon]:
        return self.types.get(name)


def _variants(word: str) -> list[str]:
    out = [word]
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("s"):
        out.append(word[:-1])
    return out + [f"{v}_id" for v in list(out)]


# --- extract ---------------------------------------------------------------------------------------

def _condition(f, cols: Columns, dialect: str) -> str:
    c = ident(cols.resolve(f.column), dialect)
    if f.op == "is_null":
        return f"{c} IS NULL"
    if f.op == "not_null":
        return f"{c} IS NOT NULL"
    if f.op == "in":
        return f"{c} IN ({', '.join(lit(v, dialect) for v in f.value)})"
    return f"{c} {'<>' if f.op == '!=' else f.op} {lit(f.value, dialect)}"


def _aggregate_parts(spec: PipelineSpec, cols: Columns, dialect: str) -> tuple[list[str], list[str], list[str]]:
    """(select items, group-by expressions, order-by names) of the spec's aggregate in ``dialect``."""
    a = spec.aggregate
    select, group, order = [], [], []
    if a.period:
        expr = _PERIOD_SQL[dialect][a.period].format(c=ident(cols.resolve(a.time_column), dialect))
        alias = _free_alias(a.period, cols)
        select.append(f"{expr} AS {ident(alias, dialect)}")
        group.append(expr)
        order.append(ident(alias, dialect))
    for dim in a.dimensions:
        d = ident(cols.resolve(dim), dialect)
        select.append(d)
        group.append(d)
        order.append(d)
    for m in a.measures:
        arg = "*" if m.column is None else ident(cols.resolve(m.column), dialect)
        select.append(f"{m.fn}({arg}) AS {ident(_free_alias(m.alias, cols), dialect)}")
    return select, group, order


def _free_alias(alias: str, cols: Columns) -> str:
    # An alias equal to a source column breaks ClickHouse (aliases are visible in WHERE: "aggregate
    # function found in WHERE"), so it is renamed when the columns are known.
    return f"{alias}_agg" if alias in cols.types else alias


def _select_list(spec: PipelineSpec, cols: Columns, dialect: str) -> list[str]:
    if not cols.known:
        return ["*"]
    return [ident(n, dialect) for n in cols.types]


def build_extract(spec: PipelineSpec, cols: Columns) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(extract_sql, extract_sql_initial, dialect); all None for file, Kafka and HTTP sources."""
    src = spec.source
    if src.kind not in DATABASE_KINDS:
        return None, None, None
    dialect = src.kind
    relation = table_ref(src.table, dialect) if src.table else f"({src.query.strip().rstrip(';')}) AS q"
    conds = [_condition(f, cols, dialect) for f in spec.filters]
    if spec.aggregate:
        select, group, order = _aggregate_parts(spec, cols, dialect)
    else:
        select, group, order = _select_list(spec, cols, dialect), [], []
    base = _select_sql(select, relation, conds, group, order)
    if not spec.incremental:
        return base, None, dialect
    cursor = ident(cols.resolve(spec.incremental.cursor_column), dialect)
    initial = _select_sql(select, relation, conds, [], [cursor])
    predicate = f"{cursor} > {_PLACEHOLDER[dialect]}"
    sql = _select_sql(select, relation, [*conds, predicate], [], [cursor])
    if dialect != "sqlite":
        sql = sql.replace("%", "%%").replace("%%(cursor)s", "%(cursor)s")
    return sql, initial, dialect


def _select_sql(select: list[str], relation: str, conds: list[str], group: list[str], order: list[str]) -> str:
    lines = ["SELECT " + ",\n       ".join(select), f"FROM {relation}"]
    if conds:
        lines.append("WHERE " + "\n  AND ".join(conds))
    if group:
        lines.append("GROUP BY " + ", ".join(group))
    if order:
        lines.append("ORDER BY " + ", ".join(order))
    return "\n".join(lines)


# --- transform (DuckDB over `batch`) -----------------------------------------------------------------

def _clean_expr(op: str, col: str, value: Optional[str], current: str) -> str:
    if op == "trim":
        return f"TRIM({current})"
    if op == "lowercase":
        return f"LOWER({current})"
    if op == "uppercase":
        return f"UPPER({current})"
    return f"CASE WHEN {current} IS NULL OR TRIM(CAST({current} AS VARCHAR)) = '' THEN {lit(value, 'duckdb')} " \
           f"ELSE {current} END"


def _cleaning_stage(spec: PipelineSpec, cols: Columns) -> Optional[str]:
    exprs: dict[str, str] = {}
    order = {"trim": 0, "lowercase": 1, "uppercase": 1, "fill_empty": 2}  # trim before testing for empty
    for step in sorted((c for c in spec.cleaning if c.op != "dedupe"), key=lambda c: order[c.op]):
        name = cols.resolve(step.column)
        exprs[name] = _clean_expr(step.op, name, step.value, exprs.get(name, ident(name, "duckdb")))
    if not exprs:
        return None
    items = ", ".join(f"{e} AS {ident(n, 'duckdb')}" for n, e in exprs.items())
    return f"SELECT * REPLACE ({items}) FROM {{prev}}"


def _dedupe_stages(spec: PipelineSpec, cols: Columns) -> list[str]:
    stages = []
    for step in (c for c in spec.cleaning if c.op == "dedupe"):
        if step.column == "*":
            stages.append("SELECT DISTINCT * FROM {prev}")
        else:
            key = ident(cols.resolve(step.column), "duckdb")
            stages.append(f"SELECT * FROM {{prev}} QUALIFY ROW_NUMBER() OVER (PARTITION BY {key}) = 1")
    return stages


def _mask_expr(pattern: str, col: str, action: str) -> str:
    text = f"CAST({col} AS VARCHAR)"
    if action == "hash":
        return f"SHA256({text})"
    if "mail" in pattern.lower():  # replace each address entirely: a masked one must not look like one
        return f"REGEXP_REPLACE({text}, '{EMAIL_REGEX}', '***', 'g')"
    return f"REGEXP_REPLACE({text}, '[0-9A-Za-z]', '*', 'g')"


def _pii_stages(spec: PipelineSpec, cols: Columns) -> list[str]:
    if not spec.pii:
        return []
    if not cols.known:
        return [_pii_stage_by_pattern(rule) for rule in spec.pii]
    drop, replace = [], {}
    for rule in spec.pii:
        for name in cols.matching(rule.column):
            if rule.action == "drop":
                drop.append(ident(name, "duckdb"))
            else:
                replace[name] = _mask_expr(rule.column, ident(name, "duckdb"), rule.action)
    if not drop and not replace:
        return []
    sql = "SELECT *"
    if drop:
        sql += f" EXCLUDE ({', '.join(dict.fromkeys(drop))})"
    if replace:
        sql += " REPLACE (" + ", ".join(f"{e} AS {ident(n, 'duckdb')}" for n, e in replace.items()) + ")"
    return [sql + " FROM {prev}"]


def _pii_stage_by_pattern(rule) -> str:
    """Columns unknown at generation time (e.g. a Kafka topic): DuckDB resolves the pattern per batch."""
    like = rule.column.replace("%", "").replace("*", "%").replace("?", "_")
    regex = "(?i)^" + re.escape(rule.column).replace(r"\*", ".*").replace(r"\?", ".") + "$"
    if rule.action == "drop":
        return f"SELECT * NOT ILIKE '{like}' FROM {{prev}}"
    masked = _mask_expr(rule.column, "COLUMNS(" + lit(regex, "duckdb") + ")", rule.action)
    return f"SELECT * NOT ILIKE '{like}', {masked} FROM {{prev}}"


def build_transform(spec: PipelineSpec, cols: Columns, notes: list[str]) -> Optional[str]:
    stages: list[str] = []
    in_source = spec.source.kind in DATABASE_KINDS
    if spec.filters and not in_source:
        stages.append("SELECT * FROM {prev} WHERE " + " AND ".join(_condition(f, cols, "duckdb") for f in spec.filters))
    stage = _cleaning_stage(spec, cols)
    stages += [stage] if stage else []
    stages += _dedupe_stages(spec, cols) + _pii_stages(spec, cols)
    if spec.aggregate and not in_source:
        select, group, order = _aggregate_parts(spec, cols, "duckdb")
        stages.append(_select_sql(select, "{prev}", [], group, order))
        notes.append("the aggregate runs in the transform because the source is not a database; it is exact "
                     "only when the whole input arrives as one batch")
    if not stages and spec.transform.sql:
        return spec.transform.sql  # hand-written SQL with no declarative intent to regenerate it from
    return _chain(stages)


def _chain(stages: list[str]) -> Optional[str]:
    if not stages:
        return None
    if len(stages) == 1:
        return stages[0].replace("{prev}", "batch")
    ctes, prev = [], "batch"
    for i, stage in enumerate(stages, 1):
        body = stage.replace("{prev}", prev).replace("\n", "\n  ")
        ctes.append(f"step{i} AS (\n  {body}\n)")
        prev = f"step{i}"
    return "WITH " + ",\n".join(ctes) + f"\nSELECT * FROM {prev}"


# --- target DDL ------------------------------------------------------------------------------------

def _output_columns(spec: PipelineSpec, cols: Columns) -> Optional[list[tuple[str, Canon]]]:
    if spec.aggregate:
        return _aggregate_columns(spec, cols)
    if not cols.known:
        return None
    dropped = {n for r in spec.pii if r.action == "drop" for n in cols.matching(r.column)}
    masked = {n for r in spec.pii if r.action != "drop" for n in cols.matching(r.column)}
    return [(n, Canon("string") if n in masked else t) for n, t in cols.types.items() if n not in dropped]


def _aggregate_columns(spec: PipelineSpec, cols: Columns) -> Optional[list[tuple[str, Canon]]]:
    a = spec.aggregate
    if not cols.known:
        return None
    out = []
    if a.period:
        out.append((_free_alias(a.period, cols), Canon("timestamp" if a.period == "hour" else "date")))
    out += [(cols.resolve(d), cols.type_of(cols.resolve(d)) or Canon("string")) for d in a.dimensions]
    for m in a.measures:
        src = cols.type_of(cols.resolve(m.column)) if m.column else None
        out.append((_free_alias(m.alias, cols), _measure_type(m.fn, src)))
    return out


def _measure_type(fn: str, src: Optional[Canon]) -> Canon:
    if fn == "count":
        return Canon("int64")
    if fn == "avg" or src is None:
        return Canon("float64")
    if fn == "sum" and src.kind == "decimal":
        return Canon("decimal", 38, src.scale)
    if fn == "sum" and src.kind.startswith(("int", "uint")):
        return Canon("int64")
    if fn == "sum":
        return Canon("float64")
    return src  # min / max keep the type


def build_target_ddl(spec: PipelineSpec, cols: Columns) -> tuple[Optional[str], list[str], Optional[str]]:
    """(CREATE TABLE IF NOT EXISTS ..., setup statements, dialect) for database targets."""
    t = spec.target
    if t.kind not in DATABASE_KINDS:
        return None, [], None
    dialect = t.kind
    setup = _setup_sql(t.table, dialect)
    columns = _output_columns(spec, cols)
    if not columns:  # unknown yet (e.g. an empty topic): the executor infers the table from the first batch
        return None, setup, dialect
    if dialect == "clickhouse":
        return _clickhouse_ddl(spec, columns), setup, dialect
    return _relational_ddl(spec, columns, dialect), setup, dialect


def _setup_sql(table: str, dialect: str) -> list[str]:
    if "." not in table or dialect == "sqlite":
        return []
    schema = table.split(".")[0]
    if dialect == "clickhouse":
        return [f"CREATE DATABASE IF NOT EXISTS {ident(schema, dialect)}"]
    return [] if schema == "public" else [f"CREATE SCHEMA IF NOT EXISTS {ident(schema, dialect)}"]


def _clickhouse_ddl(spec: PipelineSpec, columns: list[tuple[str, Canon]]) -> str:
    # Merge: ReplacingMergeTree ORDER BY the keys. The version is the incremental cursor when there is
    # one (only rows whose cursor grew are extracted, so it orders versions; it must be non-Nullable).
    # Without a cursor there is no version: the row inserted last wins, and a full sync inserts the
    # source's current state, whereas updated_at as version would lose an update that left it alone.
    t = spec.target
    if t.load_mode == "merge":
        version = _version_column(spec, columns)
        engine = f"ReplacingMergeTree({ident(version, 'clickhouse')})" if version else "ReplacingMergeTree"
        not_null, order_by = set(t.keys) | ({version} if version else set()), list(t.keys)
    elif spec.aggregate and spec.aggregate.period:
        period = columns[0][0]
        not_null, engine, order_by = {period}, "MergeTree", [period]
    else:
        not_null, engine, order_by = set(), "MergeTree", []
    body = ",\n".join(f"    {ident(n, 'clickhouse')} {to_target(c, 'clickhouse', n not in not_null)}"
                      for n, c in columns)
    key = "(" + ", ".join(ident(k, "clickhouse") for k in order_by) + ")" if order_by else "tuple()"
    return (f"CREATE TABLE IF NOT EXISTS {table_ref(t.table, 'clickhouse')} (\n{body}\n) "
            f"ENGINE = {engine} ORDER BY {key}")


def _version_column(spec: PipelineSpec, columns: list[tuple[str, Canon]]) -> Optional[str]:
    if not spec.incremental:
        return None
    name = spec.incremental.cursor_column
    c = dict(columns).get(name)
    ok = c is not None and c.kind in ("date", "timestamp", "uint8", "uint16", "uint32", "uint64")
    return name if ok else None


def _relational_ddl(spec: PipelineSpec, columns: list[tuple[str, Canon]], dialect: str) -> str:
    t = spec.target
    lines = [f"    {ident(n, dialect)} {to_target(c, dialect)}" for n, c in columns]
    if t.load_mode == "merge":
        lines.append(f"    PRIMARY KEY ({', '.join(ident(k, dialect) for k in t.keys)})")
    return f"CREATE TABLE IF NOT EXISTS {table_ref(t.table, dialect)} (\n" + ",\n".join(lines) + "\n)"


# --- checks and the public entry point -------------------------------------------------------------

def check_sql(sql: str, dialect: str, *, read_only: bool = False) -> None:
    """Parse ``sql`` with sqlglot in ``dialect``: exactly one statement; a SELECT when ``read_only``."""
    import sqlglot
    from sqlglot import exp

    probe = sql.replace("%(cursor)s", "{cursor:String}" if dialect == "clickhouse" else "%(cursor)s")
    probe = probe.replace("%%", "%")
    try:
        statements = [s for s in sqlglot.parse(probe, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as exc:
        raise SqlGenerationError(f"generated {dialect} SQL does not parse: {exc}") from exc
    if len(statements) != 1:
        raise SqlGenerationError(f"expected one {dialect} statement, got {len(statements)}")
    if read_only and not isinstance(statements[0], (exp.Select, exp.Union)):
        raise SqlGenerationError("extract SQL must be a read-only SELECT")


def generate_sql(spec: Union[PipelineSpec, dict], source_columns: ColumnList = None) -> dict[str, Any]:
    """Extract SQL (source dialect), DuckDB transform SQL over ``batch`` and target DDL for ``spec``.

    ``source_columns`` are (name, type) pairs as the source spells types (PostgreSQL, ClickHouse, SQLite,
    or Arrow/DuckDB names for files and topics); without them the extract selects ``*`` and no DDL is
    generated unless the output columns follow from the spec alone.
    """
    model = spec if isinstance(spec, PipelineSpec) else PipelineSpec.model_validate(spec)
    cols = Columns(source_columns, model.source.kind)
    notes: list[str] = []
    extract, initial, src_dialect = build_extract(model, cols)
    transform = build_transform(model, cols, notes)
    ddl, setup, dst_dialect = build_target_ddl(model, cols)
    _check_all(extract, initial, src_dialect, transform, ddl, setup, dst_dialect)
    if model.aggregate and src_dialect:
        notes.append("the aggregate runs in the source (extract SQL): per-batch aggregation would split groups")
    if model.target.kind in DATABASE_KINDS and ddl is None:
        notes.append("target DDL needs the source columns; the executor creates the table from the first batch")
    return {"extract_sql": extract, "extract_sql_initial": initial,
            "extract_params": {"cursor": f"high-water mark of {model.incremental.cursor_column}"}
            if model.incremental else {},
            "transform_sql": transform, "target_ddl": ddl, "target_setup_sql": setup,
            "dialects": {"extract": src_dialect, "transform": "duckdb" if transform else None,
                         "target": dst_dialect},
            "notes": notes}


def _check_all(extract, initial, src_dialect, transform, ddl, setup, dst_dialect) -> None:
    for sql in (extract, initial):
        if sql:
            check_sql(sql, src_dialect, read_only=True)
    if transform:
        check_sql(transform, "duckdb", read_only=True)
    for sql in [ddl, *setup]:
        if sql:
            check_sql(sql, dst_dialect)
