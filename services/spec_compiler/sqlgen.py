"""``generate_sql``: a PipelineSpec (and, when known, the source's and joined tables' columns) to SQL.

Placement (why each piece goes where it goes), following the spec's order of application
(source + joins -> filters -> cleaning -> aggregate or select -> order/limit -> rename -> pii):

* On a database source, joins, filters, aggregate or select, order_by and limit (top-N) are compiled into
  the extract SELECT. Less data crosses the wire, and above all the executor moves data in bounded
  batches: a GROUP BY or a top-N in the transform would run once *per batch*, and only the source sees
  all rows at once. ``within_last`` is the source's own clock (``now()``, ``datetime('now')``). When
  they read columns the spec cleans or de-duplicates, that cleaning runs first, in a subquery of the
  filtered joined rows (``cleaned``, columns ``cln_*`` so that no outer alias can shadow them).
* On a file, topic or HTTP source the same steps run in the DuckDB transform over ``batch``; they are
  exact only when the run hands the transform the whole input as one batch (``needs_whole_input``), and
  a note says so.
* Row-wise work (cleaning, rename, PII masking) runs in the DuckDB transform: it is source-independent
  and correct batch by batch. De-duplication there is per batch; the compiler pairs it with a merge load
  on the same key so duplicates across batches collapse as well.
* Incremental extracts carry ``WHERE <cursor> > %(cursor)s`` (``:cursor`` for SQLite) and ``ORDER BY
  <cursor>``; the executor binds ``cursor`` to the stored high-water mark, or runs ``extract_sql_initial``
  (no predicate) when there is none yet. PostgreSQL (psycopg) and ClickHouse (clickhouse-driver) both use
  pyformat parameters, so a literal ``%`` in these statements is doubled.
* ClickHouse joins are written ``ALL INNER|LEFT JOIN ... ON`` (18.16 knows no other strictness default)
  with ``SETTINGS join_use_nulls = 1`` for left joins, so an unmatched row gets NULLs as in the other
  engines rather than zeros and empty strings. ClickHouse 18.16 joins one table per SELECT.
* Sorting puts NULLs last in every dialect (PostgreSQL and SQLite would disagree otherwise), so a top-N
  "by revenue" never starts with unknown revenues.

Every statement is parsed with sqlglot in its own dialect before it is returned. SQL text is written
here, not re-rendered by sqlglot: sqlglot would rewrite ``toStartOfMonth`` as ``dateTrunc``, which
ClickHouse 18.16 does not have.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Optional, Union

from services.domain.spec import DATABASE_KINDS, PipelineSpec

from .dialect import CLEANING_ORDER, PERIOD_SQL, cleaned, condition, ident, lit, table_ref
from .scope import ColumnList, Field, JoinColumns, Scope, SqlGenerationError, ValueRanges
from .shape import OutCol, find_column, pii_effect, renames, shape_of, shaped_columns
from .typemap import Canon, clickhouse_holds, to_target

__all__ = ["generate_sql", "check_sql", "ident", "table_ref", "lit", "SqlGenerationError"]

EMAIL_REGEX = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_PLACEHOLDER = {"postgres": "%(cursor)s", "clickhouse": "%(cursor)s", "sqlite": ":cursor"}
Ref = Callable[[Field], str]


def _source_ref(scope: Scope, dialect: str) -> Ref:
    """How a joined-row column is written in the extract: qualified by its table's alias when joining."""
    if not scope.joins:
        return lambda f: ident(f.column, dialect)
    return lambda f: f"{ident(f.table or scope.alias, dialect)}.{ident(f.column, dialect)}"


def _batch_ref(f: Field) -> str:
    return ident(f.column, "duckdb")


def _item(expr: str, name: str, dialect: str) -> str:
    return expr if expr == ident(name, dialect) else f"{expr} AS {ident(name, dialect)}"


# --- the shaping steps (aggregate or select, order, limit) in one dialect ----------------------------

def _shape_parts(spec: PipelineSpec, scope: Scope, columns: Optional[list[OutCol]], ref: Ref,
                 dialect: str) -> tuple[list[str], list[str], list[str]]:
    """(select items, group-by expressions, order-by items) of the shaping steps in ``dialect``."""
    if spec.aggregate:
        return _aggregate_parts(spec, scope, columns, ref, dialect)
    if columns is None:
        return _star(scope, dialect), [], _order_items(spec, scope, None, ref, dialect)
    return ([_item(ref(c.field), c.name, dialect) for c in columns], [],
            _order_items(spec, scope, columns, ref, dialect))


def _star(scope: Scope, dialect: str) -> list[str]:
    """All columns while the source's are unknown; each join adds the columns it names or knows."""
    if not scope.joins:
        return ["*"]
    items = [f"{ident(scope.alias, dialect)}.*"]
    for j in scope.joins:
        added = scope.added(j)
        if added is None:
            raise SqlGenerationError(f"join {j.name}: its columns are unknown; name them in join.columns or "
                                     "give the joined table's columns")
        items += [_item(f"{ident(j.name, dialect)}.{ident(f.column, dialect)}", f.name, dialect) for f in added]
    return items


def _aggregate_parts(spec, scope, columns, ref, dialect):
    select, group, default_order = [], [], []
    for c in columns:
        if c.period:
            expr = PERIOD_SQL[dialect][c.period].format(c=ref(c.field))
            select.append(f"{expr} AS {ident(c.name, dialect)}")
            group.append(expr)
            default_order.append(ident(c.name, dialect))
        elif c.measure:
            arg = "*" if c.field is None else ref(c.field)
            select.append(f"{c.measure.fn}({arg}) AS {ident(c.name, dialect)}")
        else:
            select.append(_item(ref(c.field), c.name, dialect))
            group.append(ref(c.field))
            default_order.append(ref(c.field))
    if not spec.order_by:
        return select, group, default_order
    order = _order_items(spec, scope, columns, ref, dialect)
    # Ties broken by the group keys: the same top-N whatever the engine or the plan it picks.
    return select, group, order + [f"{k} NULLS LAST" for k in default_order if f"{k} NULLS LAST" not in order
                                   and f"{k} DESC NULLS LAST" not in order]


def _order_items(spec, scope, columns, ref, dialect) -> list[str]:
    out = []
    for ob in spec.order_by:
        expr = _order_expr(spec, scope, columns, ob.column, ref, dialect)
        out.append(f"{expr}{' DESC' if ob.descending else ''} NULLS LAST")
    return out


def _order_expr(spec, scope, columns, word, ref, dialect) -> str:
    col = find_column(columns, word) if columns is not None else None
    if spec.aggregate:
        if col is None:  # "by amount" of an aggregate: the one measure of that column
            field = scope.resolve(word)
            hits = [c for c in columns if c.measure and c.field == field]
            if len(hits) != 1:
                raise SqlGenerationError(f"order_by {word!r} is not an output column of the aggregate "
                                         f"{[c.name for c in columns]}")
            col = hits[0]
        return ident(col.name, dialect)
    return ref(col.field if col is not None else scope.resolve(word))


# --- extract ---------------------------------------------------------------------------------------

def build_extract(spec: PipelineSpec, scope: Scope, columns: Optional[list[OutCol]]
                  ) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(extract_sql, extract_sql_initial, dialect); all None for file, Kafka and HTTP sources."""
    src = spec.source
    if src.kind not in DATABASE_KINDS:
        return None, None, None
    dialect = src.kind
    ref = _source_ref(scope, dialect)
    relation = _relation(spec, scope, dialect)
    conds = [condition(f, ref(fld), fld.type, dialect) for f, fld in ((f, scope.resolve(f.column))
                                                                      for f in spec.filters)]
    tail = _tail(spec, dialect)
    pushed, dedupe = pushed_cleaning(spec, scope), pushed_dedupe(spec, scope)
    if pushed or dedupe:  # cleaning comes before the shaping: shape a subquery of the cleaned, filtered rows
        relation, conds = _cleaned_rows(scope, relation, conds, pushed, dedupe, ref, dialect)
        ref = lambda f: ident(_inner(f), dialect)  # noqa: E731
    select, group, order = _shape_parts(spec, scope, columns, ref, dialect)
    if not spec.incremental:
        return _select_sql(select, relation, conds, group, order, tail), None, dialect
    cursor = ref(scope.resolve(spec.incremental.cursor_column))
    order = [cursor] + [o for o in order if o != cursor]  # resuming from a batch's cursor needs this order
    initial = _select_sql(select, relation, conds, [], order, tail)
    sql = _select_sql(select, relation, [*conds, f"{cursor} > {_PLACEHOLDER[dialect]}"], [], order, tail)
    if dialect != "sqlite":
        sql = sql.replace("%", "%%").replace("%%(cursor)s", "%(cursor)s")
    return sql, initial, dialect


def _shapes_in_source(spec: PipelineSpec, scope: Scope) -> bool:
    return spec.source.kind in DATABASE_KINDS and not spec.incremental and scope.known and \
        bool(spec.aggregate or spec.order_by or spec.limit is not None)


def pushed_cleaning(spec: PipelineSpec, scope: Scope) -> dict[Field, list]:
    """Cleaning steps the extract applies before it aggregates, orders or cuts to N (database sources,
    known columns): grouping or ranking by a cleaned column must see the cleaned values ("lowercase
    status, count per status"). A column with a step SQL cannot say here stays with the transform.
    """
    if not _shapes_in_source(spec, scope):
        return {}
    steps: dict[Field, list] = {}
    for step in sorted((c for c in spec.cleaning if c.op != "dedupe"), key=lambda c: CLEANING_ORDER[c.op]):
        steps.setdefault(scope.resolve(step.column), []).append(step)
    return {f: s for f, s in steps.items()
            if all(cleaned(c.op, c.value, "x", f.type, spec.source.kind) for c in s)}


def pushed_dedupe(spec: PipelineSpec, scope: Scope):
    """The dedupe the extract applies before aggregating or ranking (one dedupe step; more stay per batch)."""
    steps = [c for c in spec.cleaning if c.op == "dedupe"]
    return steps[0] if len(steps) == 1 and _shapes_in_source(spec, scope) else None


def _cleaned_rows(scope: Scope, relation: str, conds: list[str], pushed: dict, dedupe, ref: Ref,
                  dialect: str) -> tuple[str, list[str]]:
    """(subquery of the filtered, cleaned, de-duplicated joined rows; conditions left for the outer query)."""
    def expr(f: Field) -> str:
        return _clean_chain(pushed.get(f, []), ref(f), f.type, dialect)

    inner = [f"{expr(f)} AS {ident(_inner(f), dialect)}" for f in scope.fields()]
    tail, outer = [], []
    if dedupe is not None and dedupe.column == "*":
        inner[0] = "DISTINCT " + inner[0]
    elif dedupe is not None:
        key = expr(scope.resolve(dedupe.column))
        if dialect == "clickhouse":  # no window functions in 18.16; LIMIT BY keeps one row per key
            tail = [f"LIMIT 1 BY {key}"]
        else:
            inner.append(f"ROW_NUMBER() OVER (PARTITION BY {key}) AS cln_row")
            outer = ["cln_row = 1"]
    sql = _select_sql(inner, relation, conds, [], [], tail)
    return "(\n  " + sql.replace("\n", "\n  ") + "\n) AS cleaned", outer


def _clean_chain(steps: list, expr: str, ctype, dialect: str) -> str:
    for step in steps:
        expr = cleaned(step.op, step.value, expr, ctype, dialect)
    return expr


def _inner(f: Field) -> str:
    # Names in the cleaning subquery that no alias of the outer SELECT can shadow (ClickHouse resolves
    # aliases everywhere in a query).
    return f"cln_{f.name}"


def _relation(spec: PipelineSpec, scope: Scope, dialect: str) -> str:
    src = spec.source
    base = table_ref(src.table, dialect) if src.table else f"({src.query.strip().rstrip(';')})"
    if not scope.joins:
        return base if src.table else f"{base} AS q"
    if dialect == "clickhouse" and len(scope.joins) > 1:
        raise SqlGenerationError("ClickHouse 18.16 joins one table per query; this spec joins "
                                 f"{len(scope.joins)} (load the joined result into a table first)")
    lines = [f"{base} AS {ident(scope.alias, dialect)}"]
    for j in scope.joins:
        strictness = "ALL " if dialect == "clickhouse" else ""
        keys = " AND ".join(
            f"{ident(scope.alias, dialect)}.{ident(scope.resolve(scope.alias + '.' + left).column, dialect)} = "
            f"{ident(j.name, dialect)}.{ident(scope.resolve(j.name + '.' + right).column, dialect)}"
            for left, right in zip(j.on, j.right_on or j.on))
        lines.append(f"{strictness}{j.kind.upper()} JOIN {table_ref(j.table, dialect)} AS {ident(j.name, dialect)} "
                     f"ON {keys}")
    return "\n".join(lines)


def _tail(spec: PipelineSpec, dialect: str) -> list[str]:
    tail = [f"LIMIT {spec.limit}"] if spec.limit is not None else []
    if dialect == "clickhouse" and any(j.kind == "left" for j in spec.joins):
        tail.append("SETTINGS join_use_nulls = 1")
    return tail


def _select_sql(select: list[str], relation: str, conds: list[str], group: list[str], order: list[str],
                tail: Optional[list[str]] = None) -> str:
    lines = ["SELECT " + ",\n       ".join(select), f"FROM {relation}"]
    if conds:
        lines.append("WHERE " + "\n  AND ".join(conds))
    if group:
        lines.append("GROUP BY " + ", ".join(group))
    if order:
        lines.append("ORDER BY " + ", ".join(order))
    return "\n".join(lines + list(tail or []))


# --- transform (DuckDB over `batch`) -----------------------------------------------------------------

def _clean_expr(op: str, value: Optional[str], current: str) -> str:
    if op == "trim":
        return f"TRIM({current})"
    if op == "lowercase":
        return f"LOWER({current})"
    if op == "uppercase":
        return f"UPPER({current})"
    return f"CASE WHEN {current} IS NULL OR TRIM(CAST({current} AS VARCHAR)) = '' THEN {lit(value, 'duckdb')} " \
           f"ELSE {current} END"


class _Batch:
    """The columns of the relation a transform stage reads: where a spec's word for a column points."""

    def __init__(self, spec: PipelineSpec, scope: Scope, columns: Optional[list[OutCol]]):
        self.scope = scope
        # After a database extract the batch has the shaped columns; else the source's own.
        self.columns = columns if spec.source.kind in DATABASE_KINDS else None

    def name(self, word: str) -> Optional[str]:
        """The batch column ``word`` names; None when the extract's shaping left it out."""
        if self.columns is None:
            return self.scope.resolve(word).name
        col = find_column(self.columns, word)
        if col is None:
            fld = self.scope.resolve(word)
            col = next((c for c in self.columns if c.field == fld and not c.measure and not c.period), None)
        return col.name if col else None


def _cleaning_stages(spec: PipelineSpec, batch: _Batch, notes: list[str]) -> list[str]:
    exprs: dict[str, str] = {}
    stages = []
    pushed = {id(step) for steps in pushed_cleaning(spec, batch.scope).values() for step in steps}
    for step in sorted((c for c in spec.cleaning if c.op != "dedupe"), key=lambda c: CLEANING_ORDER[c.op]):
        if id(step) in pushed:
            continue
        name = batch.name(step.column)
        if name is None:
            notes.append(f"{step.op} {step.column}: the column is not in the output (select/aggregate), skipped")
            continue
        exprs[name] = _clean_expr(step.op, step.value, exprs.get(name, ident(name, "duckdb")))
    if exprs:
        items = ", ".join(f"{e} AS {ident(n, 'duckdb')}" for n, e in exprs.items())
        stages.append(f"SELECT * REPLACE ({items}) FROM {{prev}}")
    for step in (c for c in spec.cleaning if c.op == "dedupe" and c is not pushed_dedupe(spec, batch.scope)):
        key = None if step.column == "*" else batch.name(step.column)
        if step.column == "*":
            stages.append("SELECT DISTINCT * FROM {prev}")
        elif key is None:
            notes.append(f"dedupe {step.column}: the column is not in the output (select/aggregate), skipped")
        else:
            stages.append(f"SELECT * FROM {{prev}} QUALIFY ROW_NUMBER() OVER (PARTITION BY "
                          f"{ident(key, 'duckdb')}) = 1")
    return stages


def _mask_expr(pattern: str, col: str, action: str) -> str:
    text = f"CAST({col} AS VARCHAR)"
    if action == "hash":
        return f"SHA256({text})"
    if "mail" in pattern.lower():  # replace each address entirely: a masked one must not look like one
        return f"REGEXP_REPLACE({text}, '{EMAIL_REGEX}', '***', 'g')"
    return f"REGEXP_REPLACE({text}, '[0-9A-Za-z]', '*', 'g')"


def _pii_stages(spec: PipelineSpec, names: Optional[list[str]]) -> list[str]:
    if not spec.pii:
        return []
    if names is None:
        return [_pii_stage_by_pattern(rule) for rule in spec.pii]
    dropped, _ = pii_effect(spec, names)
    replace = {}
    for rule in (r for r in spec.pii if r.action != "drop"):
        for name in names:
            if rule.matches(name) and name not in dropped:
                replace[name] = _mask_expr(rule.column, ident(name, "duckdb"), rule.action)
    if not dropped and not replace:
        return []
    sql = "SELECT *"
    if dropped:
        sql += f" EXCLUDE ({', '.join(ident(n, 'duckdb') for n in names if n in dropped)})"
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


def _shaping_stage(spec: PipelineSpec, scope: Scope, columns: Optional[list[OutCol]]) -> Optional[str]:
    """Aggregate / select / order / limit over the batch (sources that are not databases)."""
    if not (spec.aggregate or spec.select or spec.order_by or spec.limit is not None):
        return None
    select, group, order = _shape_parts(spec, scope, columns if (spec.aggregate or spec.select) else None,
                                        _batch_ref, "duckdb")
    return _select_sql(select, "{prev}", [], group, order, [f"LIMIT {spec.limit}"] if spec.limit else [])


def build_transform(spec: PipelineSpec, scope: Scope, columns: Optional[list[OutCol]],
                    notes: list[str]) -> Optional[str]:
    stages: list[str] = []
    in_source = spec.source.kind in DATABASE_KINDS
    if spec.filters and not in_source:
        conds = [condition(f, _batch_ref(fld), fld.type, "duckdb")
                 for f, fld in ((f, scope.resolve(f.column)) for f in spec.filters)]
        stages.append("SELECT * FROM {prev} WHERE " + " AND ".join(conds))
    stages += _cleaning_stages(spec, _Batch(spec, scope, columns), notes)
    if not in_source:
        shaping = _shaping_stage(spec, scope, columns)
        stages += [shaping] if shaping else []
        if shaping and (spec.aggregate or spec.order_by or spec.limit is not None):
            notes.append("aggregate/order/top-N run in the transform because the source is not a database: "
                         "exact only when the run hands the transform its whole input as one batch "
                         "(needs_whole_input)")
    mapping = renames(spec, columns)
    if mapping:
        stages.append("SELECT * RENAME (" + ", ".join(f"{ident(o, 'duckdb')} AS {ident(n, 'duckdb')}"
                                                     for o, n in mapping.items()) + ") FROM {prev}")
    names = None if columns is None else [mapping.get(c.name, c.name) for c in columns]
    stages += _pii_stages(spec, names)
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

def build_target_ddl(spec: PipelineSpec, scope: Scope) -> tuple[Optional[str], list[str], Optional[str]]:
    """(CREATE TABLE IF NOT EXISTS ..., setup statements, dialect) for database targets."""
    t = spec.target
    if t.kind not in DATABASE_KINDS:
        return None, [], None
    dialect = t.kind
    setup = _setup_sql(t.table, dialect)
    columns = shape_of(spec, scope)
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
    name = spec.rename.get(spec.incremental.cursor_column, spec.incremental.cursor_column)
    c = dict(columns).get(name)
    # A date column declared String (its days leave ClickHouse's range) cannot version rows.
    ok = c is not None and c.kind in ("date", "timestamp", "uint8", "uint16", "uint32", "uint64") and clickhouse_holds(c)
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


def generate_sql(spec: Union[PipelineSpec, dict], source_columns: ColumnList = None,
                 join_columns: JoinColumns = None, value_ranges: ValueRanges = None) -> dict[str, Any]:
    """Extract SQL (source dialect), DuckDB transform SQL over ``batch`` and target DDL for ``spec``.

    ``source_columns`` are (name, type) pairs as the source spells types (PostgreSQL, ClickHouse, SQLite,
    or Arrow/DuckDB names for files and topics); ``join_columns`` maps each joined table, as the spec
    names it (``schema.table``), to its pairs. Without them the extract selects ``*`` and no DDL is
    generated unless the output columns follow from the spec alone. ``value_ranges`` maps source date and
    timestamp columns to their real (min, max): a ClickHouse target declares String for one whose values
    a ClickHouse 18.16 Date/DateTime cannot hold (before 1970, after 2105).
    """
    model = spec if isinstance(spec, PipelineSpec) else PipelineSpec.model_validate(spec)
    scope = Scope(model, source_columns, join_columns, value_ranges)
    columns = shaped_columns(model, scope)
    notes: list[str] = []
    extract, initial, src_dialect = build_extract(model, scope, columns)
    transform = build_transform(model, scope, columns, notes)
    ddl, setup, dst_dialect = build_target_ddl(model, scope)
    _check_all(extract, initial, src_dialect, transform, ddl, setup, dst_dialect)
    if (model.aggregate or model.limit is not None) and src_dialect:
        notes.append("the aggregate / top-N runs in the source (extract SQL): per-batch it would be wrong")
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
