"""Checks of a draft against its spec: the artifacts must implement what the spec says (pure functions).

The static SQL rules (``sql_rules``) say whether a statement is safe; these say whether it is *right*:
every artifact the spec needs is there, the spec's columns exist in the source, the SQL's output columns and
grain are the spec's (an aggregate groups by its period and dimensions, a merge on ClickHouse replaces by its
keys), the DDL is the target's own dialect, and a dry run's result has the spec's shape. Dialects always come
from the spec's engines, never from what a model wrote.
"""
from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any, Iterable, Optional

from services.agents.qa import Finding

DATABASE_KINDS = ("postgres", "clickhouse", "sqlite")
# Engine names as people and models spell them -> the one sqlglot dialect name.
_DIALECT_NAMES = {"postgres": "postgres", "postgresql": "postgres", "pg": "postgres", "psql": "postgres",
                  "clickhouse": "clickhouse", "ch": "clickhouse", "sqlite": "sqlite", "sqlite3": "sqlite",
                  "duckdb": "duckdb"}
_MEASURE_FUNCS = {"sum": "Sum", "count": "Count", "avg": "Avg", "min": "Min", "max": "Max"}


def normalise_dialect(name: Any) -> str:
    """``"ClickHouse"``, ``"postgresql"``, ``" PG "`` -> the sqlglot dialect name; ``""`` when unknown."""
    return _DIALECT_NAMES.get(str(name or "").strip().lower().replace(" ", ""), "")


def spec_dialects(spec: dict) -> tuple[str, str]:
    """(source dialect, target dialect) of the spec's engines; ``""`` for a side that is not a database."""
    src = (spec.get("source") or {}).get("kind")
    dst = (spec.get("target") or {}).get("kind")
    return (src if src in DATABASE_KINDS else "", dst if dst in DATABASE_KINDS else "")


def _err(rule: str, message: str, statement: Optional[str] = None) -> Finding:
    return Finding(rule, "error", message, statement)


def _warn(rule: str, message: str) -> Finding:
    return Finding(rule, "warning", message)


# ---------------------------------------------------------------- what the spec needs


def _in_source(spec: dict) -> bool:
    return (spec.get("source") or {}).get("kind") in DATABASE_KINDS


def needs_extract(spec: dict) -> list[str]:
    """Why a database source needs its own extract SQL (empty: a plain read of the table would do)."""
    if not _in_source(spec):
        return []
    reasons = [k for k in ("filters", "aggregate", "joins", "select", "order_by", "incremental") if spec.get(k)]
    return reasons + (["limit"] if spec.get("limit") else [])


def needs_transform(spec: dict) -> list[str]:
    """Why the spec needs a DuckDB transform over ``batch``."""
    reasons = [k for k in ("cleaning", "pii") if spec.get(k)]
    if (spec.get("transform") or {}).get("sql"):
        reasons.append("transform.sql")
    if not _in_source(spec):  # what a database does in the extract, a file or topic does in the transform
        reasons += [k for k in ("filters", "aggregate", "select", "order_by") if spec.get(k)]
        reasons += ["limit"] if spec.get("limit") else []
    return reasons


def required_artifacts(spec: dict, cur: dict, source_columns: Optional[list] = None) -> list[Finding]:
    """A missing artifact the spec needs, or one it must not have, is an error naming the spec's reason."""
    out: list[Finding] = []
    why = needs_extract(spec)
    if why and not (cur.get("extract_sql") or "").strip():
        out.append(_err("missing-artifact", f"the spec's {', '.join(why)} must run in the source, but the draft has "
                                            "no extract SQL" + _because(cur)))
    why = needs_transform(spec)
    if why and not (cur.get("transform_sql") or "").strip():
        out.append(_err("missing-artifact", f"the spec's {', '.join(why)} need(s) a transform, but the draft has "
                                            "no transform SQL" + _because(cur)))
    if (spec.get("transform") or {}).get("python") and not (cur.get("python_code") or "").strip():
        out.append(_err("missing-artifact", "the spec has a Python transform but the draft has no code"))
    if not _in_source(spec) and (cur.get("extract_sql") or "").strip():
        out.append(_err("unexpected-artifact", f"a {(spec.get('source') or {}).get('kind')} source is read by the "
                                               "executor, not queried: the draft must not carry extract SQL"))
    target = spec.get("target") or {}
    has_ddl = bool((cur.get("target_ddl") or "").strip() or cur.get("target_setup_sql"))
    if target.get("kind") in DATABASE_KINDS:
        if not (cur.get("target_ddl") or "").strip() and source_columns:
            out.append(_err("missing-artifact", f"the {target['kind']} target {target.get('table')} needs a "
                                                "CREATE TABLE, but the draft has none" + _because(cur)))
    elif has_ddl:
        out.append(_err("unexpected-artifact", f"a {target.get('kind')} target has no tables: the draft must not "
                                               "carry target DDL"))
    return out


def _because(cur: dict) -> str:
    notes = [n for n in cur.get("sql_notes") or [] if "no SQL could be generated" in n or "rror" in n]
    return f" ({notes[0]})" if notes else ""


# ---------------------------------------------------------------- spec columns vs the real ones


def _pairs(columns: Optional[list]) -> Optional[list[tuple[str, str]]]:
    return [(str(c[0]), str(c[1]) if len(c) > 1 else "text") for c in columns] if columns else None


def _scope(spec: dict, source_columns: Optional[list], join_columns: Optional[dict] = None):
    """The compiler's own view of the row (source plus joins) and its name resolution (exact, case, plural,
    ``_id``, ``alias.col``), so QA accepts exactly what the compiler compiles."""
    from services.domain.spec import PipelineSpec
    from services.spec_compiler.scope import Scope

    joined = {t: _pairs(c) for t, c in (join_columns or {}).items()} or None
    return Scope(PipelineSpec.model_validate(spec), _pairs(source_columns), joined)


def spec_column_refs(spec: dict) -> list[tuple[str, str]]:
    """(column, where in the spec) for every source (or joined) column the spec names."""
    refs: list[tuple[str, str]] = []
    for i, f in enumerate(spec.get("filters") or []):
        refs.append((f.get("column"), f"filters[{i}]"))
    agg = spec.get("aggregate") or {}
    if agg.get("time_column"):
        refs.append((agg["time_column"], "aggregate.time_column"))
    refs += [(d, "aggregate.dimensions") for d in agg.get("dimensions") or []]
    refs += [(m["column"], f"aggregate.measures[{m.get('alias')}]") for m in agg.get("measures") or [] if m.get("column")]
    refs += [(c.get("column"), f"cleaning[{c.get('op')}]") for c in spec.get("cleaning") or [] if c.get("column") != "*"]
    if spec.get("incremental"):
        refs.append((spec["incremental"].get("cursor_column"), "incremental.cursor_column"))
    refs += [(s, "select") for s in spec.get("select") or []]
    for j in spec.get("joins") or []:
        refs += [(k, f"joins[{j.get('table')}].on") for k in j.get("on") or []]
    outputs = {m.get("alias") for m in agg.get("measures") or []} | ({agg.get("period")} if agg.get("period") else set())
    refs += [(o.get("column"), "order_by") for o in spec.get("order_by") or [] if o.get("column") not in outputs]
    return [(c, w) for c, w in refs if c]


def column_findings(spec: dict, source_columns: Optional[list], join_columns: Optional[dict] = None) -> list[Finding]:
    """Spec columns that are not among the real source columns (as the schema analyst introspected them)."""
    from services.spec_compiler import SqlGenerationError

    # A rename onto the column's own name changes nothing: the name the request asked for was lost.
    out = [_err("spec-rename", f"rename maps {old!r} onto its own name; the target would lack the new name the "
                               "request gave it") for old, new in (spec.get("rename") or {}).items() if old == new]
    if not source_columns:
        return out  # unknown (an empty topic): nothing to compare with; the schema check says why
    try:
        scope = _scope(spec, source_columns, join_columns)
    except (SqlGenerationError, ValueError) as exc:
        return out + [_err("spec-column", f"the spec's columns do not fit the source: {exc}")]
    for column, where in spec_column_refs(spec):
        if where.startswith("joins[") and ".on" in where:
            continue  # join keys are checked by the compiler with the joined table's columns
        try:
            scope.resolve(column)
        except SqlGenerationError as exc:
            out.append(_err("spec-column", f"{where} names {column!r}: {exc}"))
    return out


# ---------------------------------------------------------------- the spec's output shape and grain


def output_names(spec: dict, source_columns: Optional[list] = None, join_columns: Optional[dict] = None
                 ) -> Optional[list[str]]:
    """The columns one output row has, as the target names them (after ``rename``, less dropped PII);
    None when they follow from columns nobody knows."""
    from services.spec_compiler import output_shape

    try:
        shape = output_shape(spec, _pairs(source_columns), join_columns) if source_columns else None
    except Exception:  # the spec names a column the source lacks: column_findings reports it
        shape = None
    if shape is not None:
        return [name for name, _ in shape]
    agg, rename = spec.get("aggregate"), spec.get("rename") or {}
    if agg:  # its names follow from the spec alone
        names = ([agg["period"]] if agg.get("period") else []) + [d.split(".")[-1] for d in agg.get("dimensions") or []]
        return [rename.get(n, n) for n in names + [m["alias"] for m in agg.get("measures") or []]]
    return None


def _namer(spec: dict, source_columns: Optional[list], join_columns: Optional[dict]):
    """A spec's word for a column -> the column's own name as SQL writes it (``countries`` -> ``country``,
    ``c.region`` -> ``region``), by the compiler's resolution when the columns are known."""
    try:
        scope = _scope(spec, source_columns, join_columns) if source_columns else None
    except Exception:  # the spec does not fit the columns: column_findings says why
        scope = None

    def name(word: str) -> str:
        try:
            return scope.resolve(word).column.lower() if scope is not None else word.split(".")[-1].lower()
        except Exception:
            return word.split(".")[-1].lower()
    return name


def grain_sources(spec: dict, name=None) -> list[str]:
    """The source columns an aggregate groups by (its time column and dimensions), as a GROUP BY names them."""
    name = name or (lambda w: w.split(".")[-1].lower())
    agg = spec.get("aggregate") or {}
    cols = ([agg["time_column"]] if agg.get("period") and agg.get("time_column") else []) + list(agg.get("dimensions") or [])
    return [name(c) for c in cols]


def _accepts(expected: str, got: set[str], spec: dict) -> bool:
    """An output column is there under its target name, the compiler's ``<name>_agg`` or its name before
    ``rename`` (an extract may leave the renaming to the transform)."""
    before = {old.lower() for old, new in (spec.get("rename") or {}).items() if new == expected}
    return bool(({expected.lower(), f"{expected}_agg".lower()} | before) & got)


def _parse(sql: str, dialect: str):
    import sqlglot

    probe = sql.replace("%(cursor)s", "{cursor:String}" if dialect == "clickhouse" else "NULL").replace("%%", "%")
    probe = probe.replace(":cursor", "NULL") if dialect == "sqlite" else probe
    try:
        return sqlglot.parse_one(probe, read=dialect or None)
    except Exception:  # sqlglot's errors; the static rules report the parse error itself
        return None


def _column_names(node) -> set[str]:
    from sqlglot import exp

    return {c.name.lower() for c in node.find_all(exp.Column)}


def _outer_select(tree):
    from sqlglot import exp

    return tree if isinstance(tree, exp.Select) else None


def sql_shape_findings(spec: dict, cur: dict, source_columns: Optional[list] = None,
                       join_columns: Optional[dict] = None) -> list[Finding]:
    """The extract/transform SQL against the spec: grain, measures, filters, top-N and output columns."""
    from sqlglot import exp

    src_dialect, _ = spec_dialects(spec)
    in_source = bool(src_dialect)
    key, sql, dialect = ("extract_sql", cur.get("extract_sql"), src_dialect) if in_source else \
        ("transform_sql", cur.get("transform_sql"), "duckdb")
    if not (sql or "").strip():
        return []  # required_artifacts says whether it was needed
    tree = _parse(sql, dialect)
    if tree is None:
        return []  # the static rules report the parse error
    out: list[Finding] = []
    name = _namer(spec, source_columns, join_columns)
    groups = list(tree.find_all(exp.Group))
    grouped = set().union(*(_column_names(g) for g in groups)) if groups else set()
    agg = spec.get("aggregate")
    if agg:
        if not groups:
            out.append(_err("spec-grain", f"the spec aggregates per {', '.join(grain_sources(spec, name))} but the {key} "
                                          "has no GROUP BY: it would load one row per source row", sql))
        else:
            missing = [c for c in grain_sources(spec, name) if c not in grouped]
            if missing:
                out.append(_err("spec-grain", f"the {key} does not GROUP BY {missing} as the spec's aggregate does",
                                sql))
        out += _measure_findings(spec, tree, key, sql, name)
    elif groups and not (spec.get("cleaning") and any(c.get("op") == "dedupe" for c in spec["cleaning"])):
        out.append(_err("spec-grain", f"the spec has no aggregate but the {key} groups rows (GROUP BY)", sql))
    out += _filter_findings(spec, tree, key, sql, name)
    if spec.get("limit"):
        out += _limit_findings(spec, cur, dialect)
    select = _outer_select(tree)
    if in_source and select is not None:
        out += _output_column_findings(spec, select, key, sql, output_names(spec, source_columns, join_columns))
    return out


def _measure_findings(spec: dict, tree, key: str, sql: str, name) -> list[Finding]:
    from sqlglot import exp

    select = _outer_select(tree)
    if select is None:
        return []
    by_alias = {p.alias_or_name.lower(): p for p in select.expressions}
    out = []
    for m in spec["aggregate"].get("measures") or []:
        node = by_alias.get(m["alias"].lower()) or by_alias.get(f"{m['alias']}_agg".lower())
        if node is None:
            continue  # reported by the output column check
        want = getattr(exp, _MEASURE_FUNCS[m["fn"]])
        funcs = [f for f in node.find_all(want)]
        if not funcs:
            out.append(_err("spec-measure", f"{key} column {m['alias']!r} must be {m['fn']}({m.get('column') or '*'})",
                            sql))
        elif m.get("column") and name(m["column"]) not in set().union(*(_column_names(f) for f in funcs)):
            out.append(_err("spec-measure", f"{key} column {m['alias']!r} must aggregate {m['column']!r}", sql))
    return out


def _filter_findings(spec: dict, tree, key: str, sql: str, name) -> list[Finding]:
    from sqlglot import exp

    wheres = list(tree.find_all(exp.Where))
    filtered = set().union(*(_column_names(w) for w in wheres)) if wheres else set()
    missing = [f["column"] for f in spec.get("filters") or [] if name(f["column"]) not in filtered]
    if missing:
        return [_err("spec-filter", f"the {key} does not filter on {missing} as the spec's filters do", sql)]
    return []


def _limit_findings(spec: dict, cur: dict, src_dialect: str) -> list[Finding]:
    from sqlglot import exp

    limits = []
    for sql, dialect in ((cur.get("extract_sql"), src_dialect), (cur.get("transform_sql"), "duckdb")):
        tree = _parse(sql, dialect) if (sql or "").strip() and dialect else None
        limits += [lim for lim in tree.find_all(exp.Limit)] if tree is not None else []
    values = []
    for lim in limits:
        try:
            values.append(int(lim.expression.name))
        except (AttributeError, ValueError):
            continue
    if not any(v <= spec["limit"] for v in values):
        return [_err("spec-limit", f"the spec keeps the top {spec['limit']} rows but no SQL has LIMIT {spec['limit']}")]
    return []


def _output_column_findings(spec: dict, select, key: str, sql: str, expected: Optional[list[str]]) -> list[Finding]:
    from sqlglot import exp

    if any(isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star))
           for p in select.expressions):
        if spec.get("aggregate") or spec.get("select"):
            return [_err("spec-output", f"the {key} selects every column (*), but the spec's output is "
                                        f"{expected}", sql)]
        return []
    if not expected:
        return []
    got = {p.alias_or_name.lower() for p in select.expressions}
    missing = [c for c in expected if not _accepts(c, got, spec)]
    if missing:
        return [_err("spec-output", f"the {key} does not output the spec's column(s) {missing}; it outputs "
                                    f"{sorted(got)}", sql)]
    return []


# ---------------------------------------------------------------- target DDL


def ddl_findings(spec: dict, cur: dict) -> list[Finding]:
    """The CREATE TABLE in the target's own dialect: its types, its engine for the load mode, its columns."""
    ddl = (cur.get("target_ddl") or "").strip()
    _, dialect = spec_dialects(spec)
    if not ddl or not dialect:
        return []
    out: list[Finding] = []
    if dialect == "clickhouse":
        for name, type_text in clickhouse_column_types(ddl):
            problem = clickhouse_type_problem(type_text)
            if problem:
                out.append(_err("ddl-dialect", f"column {name!r}: {problem}", ddl))
    tree = _parse(ddl, dialect)
    if tree is None:
        return out
    out += _engine_findings(spec, tree, ddl, dialect)
    return out


def _engine_findings(spec: dict, tree, ddl: str, dialect: str) -> list[Finding]:
    from sqlglot import exp

    target = spec.get("target") or {}
    keys = [k.lower() for k in target.get("keys") or []]
    merge = target.get("load_mode") == "merge"
    if dialect == "clickhouse":
        engine = next((p.this for p in tree.find_all(exp.EngineProperty)), None)
        engine_name = (engine.name if isinstance(engine, exp.Expression) else str(engine or "")) or ""
        order = next((o for o in tree.find_all(exp.Order)), None)
        order_cols = [c.name.lower() for c in order.find_all(exp.Column)] if order is not None else []
        replacing = "replacing" in engine_name.lower()
        if merge and not replacing:
            return [_err("ddl-engine", f"a merge load on {keys} needs ENGINE = ReplacingMergeTree ORDER BY "
                                       f"({', '.join(keys)}); the DDL has {engine_name or 'no engine'}", ddl)]
        if merge and set(order_cols) != set(keys):
            return [_err("ddl-engine", f"a ReplacingMergeTree collapses rows by its ORDER BY, which must be the merge "
                                       f"keys {keys}; the DDL orders by {order_cols or 'nothing'}", ddl)]
        if not merge and replacing:
            return [_err("ddl-engine", f"an {target.get('load_mode', 'append')} load into a {engine_name} would "
                                       "collapse rows that share its ORDER BY key; use MergeTree", ddl)]
        return []
    if merge:
        declared = set()
        for node in list(tree.find_all(exp.PrimaryKey)) + list(tree.find_all(exp.UniqueColumnConstraint)):
            declared |= _column_names(node) | {i.name.lower() for i in node.find_all(exp.Identifier)}
        for col in tree.find_all(exp.ColumnDef):
            if any(isinstance(c.kind, (exp.PrimaryKeyColumnConstraint, exp.UniqueColumnConstraint))
                   for c in col.constraints):
                declared.add(col.name.lower())
        if not set(keys) <= declared:
            return [_err("ddl-engine", f"a merge load on {keys} needs PRIMARY KEY ({', '.join(keys)}) or a UNIQUE "
                                       "constraint on them (upserts conflict on it)", ddl)]
    return []


def ddl_output_findings(spec: dict, ddl_columns: list, output_columns: Iterable[str]) -> list[Finding]:
    """The output columns a load writes must all be columns of the table the DDL creates."""
    declared = {str(c[0]).lower() for c in ddl_columns or []}
    if not declared:
        return []
    missing = [c for c in output_columns if not _accepts(c, declared, spec)]
    if missing:
        return [_err("ddl-columns", f"the target DDL has no column(s) {missing} for the output; it declares "
                                    f"{sorted(declared)}")]
    return []


# ClickHouse type families (current and 18.16 spell them like this; the names are case-sensitive).
_CH_FAMILIES = frozenset("""Int8 Int16 Int32 Int64 Int128 Int256 UInt8 UInt16 UInt32 UInt64 UInt128 UInt256 Float32
Float64 BFloat16 Decimal Decimal32 Decimal64 Decimal128 Decimal256 String FixedString UUID Date Date32 DateTime
DateTime64 Enum Enum8 Enum16 Array Tuple Map Nested Nullable LowCardinality IPv4 IPv6 Bool JSON Object Nothing
Point Ring Polygon MultiPolygon LineString MultiLineString SimpleAggregateFunction AggregateFunction Variant Dynamic
Time Time64 IntervalSecond IntervalMinute IntervalHour IntervalDay IntervalWeek IntervalMonth IntervalQuarter
IntervalYear""".split())
# SQL-standard aliases current ClickHouse accepts case-insensitively (a single word each).
_CH_ALIASES = frozenset("""tinyint smallint int integer bigint int1 int2 int4 int8 float double real varchar char text
blob bytea boolean bool timestamp decimal numeric dec binary varbinary longtext mediumtext tinytext""".split())
_CH_ONE_TYPE = {"Nullable", "LowCardinality", "Array"}
_CH_TYPES = {"Tuple", "Map", "Variant"}
_CH_NAMED_TYPES = {"Nested"}
_TOKEN = re.compile(r"\s*(`[^`]*`|\"[^\"]*\"|'(?:[^'\\]|\\.)*'|[A-Za-z_][A-Za-z0-9_]*|-?\d+(?:\.\d+)?|[(),=])")


def _tokens(text: str) -> Optional[list[str]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            return None
        out.append(m.group(1))
        pos = m.end()
    return out


def clickhouse_type_problem(type_text: str) -> Optional[str]:
    """Why ``type_text`` is not a ClickHouse column type (None when it is one)."""
    toks = _tokens(type_text)
    if not toks:
        return f"{type_text!r} is not a ClickHouse type"
    try:
        end = _ch_type(toks, 0)
    except IndexError:
        return f"{type_text!r} is not a ClickHouse type: it ends early"
    except ValueError as exc:
        return f"{type_text!r} is not a ClickHouse type: {exc}"
    if end != len(toks):
        return f"{type_text!r} is not a ClickHouse type: {' '.join(toks[end:])!r} after {' '.join(toks[:end])!r}"
    return None


def _ch_type(toks: list[str], i: int) -> int:
    """Parse one type from ``toks[i]``; return the index after it."""
    name = toks[i]
    if name not in _CH_FAMILIES and name.lower() not in _CH_ALIASES:
        raise ValueError(f"unknown type family {name!r}")
    i += 1
    if i >= len(toks) or toks[i] != "(":
        if name in _CH_ONE_TYPE | _CH_TYPES | _CH_NAMED_TYPES | {"FixedString", "Enum8", "Enum16", "Enum"}:
            raise ValueError(f"{name} needs arguments")
        return i
    i += 1
    while True:
        if name in _CH_ONE_TYPE | _CH_TYPES | _CH_NAMED_TYPES:
            named = name in _CH_NAMED_TYPES or (name == "Tuple" and toks[i + 1] not in ("(", ",", ")"))
            i = _ch_type(toks, i + 1 if named else i)  # Tuple(a String, ...) and Nested name their elements
        elif name in ("AggregateFunction", "SimpleAggregateFunction"):
            i = _ch_balanced(toks, i)
        else:  # literal parameters: precision, scale, length, time zone, enum values
            if not re.fullmatch(r"-?\d+(\.\d+)?|'.*'", toks[i], re.S):
                raise ValueError(f"{name} takes literal parameters, not {toks[i]!r}")
            i += 1
            if toks[i] == "=":
                i += 2
        if toks[i] == ")":
            return i + 1
        if toks[i] != ",":
            raise ValueError(f"expected ',' or ')' in {name}(...), got {toks[i]!r}")
        i += 1
        if name == "Nullable" or name == "LowCardinality" or name == "Array":
            raise ValueError(f"{name} takes one type")


def _ch_balanced(toks: list[str], i: int) -> int:
    """Skip an argument of an aggregate-function type (a function name or a type) up to its comma."""
    depth = 0
    while i < len(toks):
        if toks[i] == "(":
            depth += 1
        elif toks[i] == ")":
            if depth == 0:
                return i
            depth -= 1
        elif toks[i] == "," and depth == 0:
            return i
        i += 1
    raise ValueError("unbalanced parentheses")


_COLUMN_TAIL = re.compile(r"\s+(DEFAULT|MATERIALIZED|ALIAS|EPHEMERAL|CODEC|COMMENT|TTL|NOT\s+NULL|NULL|PRIMARY\s+KEY)\b.*$",
                          re.I | re.S)
_NOT_A_COLUMN = re.compile(r"^(INDEX|PROJECTION|CONSTRAINT|PRIMARY\s+KEY)\b", re.I)


def clickhouse_column_types(ddl: str) -> list[tuple[str, str]]:
    """(column, type as written) of a ClickHouse CREATE TABLE, read from the text: sqlglot would accept and
    rewrite a foreign type (``TIMESTAMP WITHOUT TIME ZONE`` becomes ``DateTime``)."""
    body = _column_list(ddl)
    out = []
    for item in _split_top_level(body or ""):
        item = item.strip()
        if not item or _NOT_A_COLUMN.match(item):
            continue
        m = re.match(r"(`[^`]+`|\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_.]*)\s+(.*)$", item, re.S)
        if not m:
            out.append((item, ""))
            continue
        out.append((m.group(1).strip('`"'), _COLUMN_TAIL.sub("", m.group(2)).strip()))
    return out


def _top_level(text: str, start: int = 0):
    """(index, character, depth) of each character outside quotes, depth counted in parentheses."""
    depth, quote = 0, None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
            continue
        if ch in "'`\"":
            quote = ch
            continue
        depth += (ch == "(") - (ch == ")")
        yield i, ch, depth


def _column_list(ddl: str) -> Optional[str]:
    start = ddl.find("(")
    if start < 0:
        return None
    for i, ch, depth in _top_level(ddl, start):
        if ch == ")" and depth == 0:
            return ddl[start + 1:i]
    return None


def _split_top_level(text: str) -> list[str]:
    parts, last = [], 0
    for i, ch, depth in _top_level(text):
        if ch == "," and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    return parts + [text[last:]]


# ---------------------------------------------------------------- the dry run's result


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


_NUMERIC = {"int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64", "decimal"}


def _expected_shape(spec: dict, source_columns: Optional[list], join_columns: Optional[dict]) -> Optional[list]:
    from services.spec_compiler import output_shape

    try:
        return output_shape(spec, _pairs(source_columns), join_columns) if source_columns else None
    except Exception:  # a column the source lacks: column_findings reports it
        return None


def _value_problem(value: Any, canon) -> Optional[str]:
    """Why a result value does not fit the column's type (numbers read as text are the usual one)."""
    if value is None or canon is None:
        return None
    if canon.kind in _NUMERIC and not _is_number(value):
        return "a number"
    if canon.kind in ("date", "timestamp") and not isinstance(value, (dt.date, dt.datetime)) \
            and not _iso_time(value):  # JSON sources carry times as ISO text, which the writers convert
        return "a date or timestamp"
    return None


def _iso_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def result_shape_findings(spec: dict, columns: list[str], rows: list[dict], source_columns: Optional[list] = None,
                          join_columns: Optional[dict] = None) -> list[Finding]:
    """A dry run's output against the spec: its columns and their types, at most one row per group, top-N.

    A hand-written transform (SQL or Python) may reshape freely; then only the grain and the top-N hold."""
    out: list[Finding] = []
    hand_written = bool((spec.get("transform") or {}).get("sql") or (spec.get("transform") or {}).get("python"))
    shape = None if hand_written else _expected_shape(spec, source_columns, join_columns)
    expected = [n for n, _ in shape] if shape else (None if hand_written else output_names(spec))
    got = {c.lower() for c in columns}
    if expected and columns:
        missing = [c for c in expected if not _accepts(c, got, spec)]
        extra = [c for c in columns if shape and c.lower() not in {e.lower() for e in expected}]
        if missing or extra:
            out.append(_err("result-shape", f"the sample's result has columns {list(columns)}; the spec's output is "
                                            f"{expected}" + (f" (missing {missing})" if missing else "")
                                            + (f" (not in the spec: {extra})" if extra else "")))
    if out or not rows:
        return out
    for name, canon in shape or []:
        col = _find(columns, name, spec)
        bad = next((r.get(col) for r in rows if col and _value_problem(r.get(col), canon)), None)
        if bad is not None:
            out.append(_err("result-type", f"column {name!r} must be {_value_problem(bad, canon)} ({canon.kind}); the "
                                           f"sample's result has {bad!r} ({type(bad).__name__})"))
    out += _grain_findings(spec, columns, rows, source_columns)
    if spec.get("aggregate") and not shape:
        out += _measure_value_findings(spec, columns, rows)
    if spec.get("limit") and len(rows) > spec["limit"]:
        out.append(_err("result-shape", f"the spec keeps the top {spec['limit']} rows; the sample's result has "
                                        f"{len(rows)}"))
    return out


def _find(columns: list[str], name: str, spec: dict) -> Optional[str]:
    by_lower = {c.lower(): c for c in columns}
    before = [old for old, new in (spec.get("rename") or {}).items() if new == name]
    for cand in [name, f"{name}_agg", (spec.get("rename") or {}).get(name, ""), *before]:
        if cand.lower() in by_lower:
            return by_lower[cand.lower()]
    return None


def _grain_findings(spec: dict, columns: list[str], rows: list[dict], source_columns: Optional[list]) -> list[Finding]:
    """An aggregate (or a dedupe) yields at most one row per value of its grain."""
    from services.spec_compiler import grain

    try:
        keys = grain(spec, _pairs(source_columns))
    except Exception:
        keys = None
    if not keys:
        return []
    if keys == ["*"]:
        group_cols = list(columns)
    else:
        group_cols = [c for c in (_find(columns, k, spec) for k in keys) if c]
        if len(group_cols) < len(keys):
            return [_err("result-grain", f"the sample's result lacks the grain column(s) {keys}; it has {list(columns)}")]
    groups = {tuple(repr(r.get(c)) for c in group_cols) for r in rows}
    if len(groups) < len(rows):
        return [_err("result-grain", f"the sample's result has {len(rows)} rows for {len(groups)} value(s) of "
                                     f"{group_cols}: the spec yields one row per value")]
    return []


def _measure_value_findings(spec: dict, columns: list[str], rows: list[dict]) -> list[Finding]:
    """Without the source's types: measures must still be numbers and a period a date."""
    agg = spec["aggregate"]
    out: list[Finding] = []
    wanted = [(m["alias"], "a number", _is_number) for m in agg.get("measures") or []]
    if agg.get("period"):
        wanted.append((agg["period"], "a date or timestamp", lambda v: isinstance(v, (dt.date, dt.datetime))))
    for name, what, ok in wanted:
        col = _find(columns, name, spec)
        bad = next((r.get(col) for r in rows if col and r.get(col) is not None and not ok(r.get(col))), None)
        if bad is not None:
            out.append(_err("result-type", f"column {name!r} must be {what}; the sample's result has {bad!r}"))
    return out


# ---------------------------------------------------------------- values the target types can hold

def _clickhouse_day_column(type_text: str) -> Optional[str]:
    """``Date`` or ``DateTime`` when a ClickHouse column type stores days since 1970 (Nullable unwrapped)."""
    base = str(type_text or "").strip().lower()
    for _ in range(2):
        base = re.sub(r"^(?:nullable|lowcardinality)\((.*)\)$", r"\1", base)
    m = re.fullmatch(r"(date|datetime)(\(.*\))?", base)  # sqlglot spells a parsed Date as DATE
    return {"date": "Date", "datetime": "DateTime"}[m.group(1)] if m else None


def _source_name_of(spec: dict, target_column: str) -> str:
    before = [old for old, new in (spec.get("rename") or {}).items() if new == target_column]
    return before[0] if before else target_column


def date_range_findings(spec: dict, ddl_columns: list, value_ranges: dict) -> list[Finding]:
    """A ClickHouse Date/DateTime column fed by a source column whose real min or max it cannot hold.

    ClickHouse 18.16 counts days (and seconds) from 1970-01-01 up to 2105: the driver would load an
    earlier day as 1970-01-01, a row other than the source's. ``value_ranges`` maps source columns to their
    measured [min, max]."""
    from services.connectors.typemap import CLICKHOUSE_DATE_RANGE, clickhouse_range_fits

    if (spec.get("target") or {}).get("kind") != "clickhouse" or not value_ranges:
        return []
    out = []
    for name, type_text in ddl_columns or []:
        base = _clickhouse_day_column(type_text)
        rng = value_ranges.get(_source_name_of(spec, name)) if base else None
        if rng and not clickhouse_range_fits(*rng):
            low, high = CLICKHOUSE_DATE_RANGE
            out.append(_err("target-range", f"column {name!r} is {base}, which holds {low}..{high} only; the "
                                            f"source's values run from {rng[0]} to {rng[1]}: declare it String "
                                            "(ISO text) so no value becomes 1970-01-01"))
    return out


def sample_range_findings(spec: dict, ddl_columns: list, rows: list[dict]) -> list[Finding]:
    """A dry run's output value that the target's ClickHouse Date/DateTime column cannot hold."""
    from services.connectors.typemap import CLICKHOUSE_DATE_RANGE, clickhouse_holds

    if (spec.get("target") or {}).get("kind") != "clickhouse":
        return []
    out = []
    for name, type_text in ddl_columns or []:
        base = _clickhouse_day_column(type_text)
        bad = next((r[name] for r in rows if base and r.get(name) is not None and not clickhouse_holds(r[name])),
                   None)
        if bad is not None:
            low, high = CLICKHOUSE_DATE_RANGE
            out.append(_err("target-range", f"column {name!r} is {base}, which holds {low}..{high} only; the "
                                            f"sample's result has {bad}: it would load as another day"))
    return out


# ---------------------------------------------------------------- rows the spec's filters keep

def filter_findings(spec: dict, columns: list[str], rows: list[dict]) -> list[Finding]:
    """A dry run's output row that one of the spec's filters would have dropped (a lost WHERE).

    Only where the output still carries the filtered value as the filter saw it: not after an aggregate or
    a hand-written transform, nor on a column the spec cleans or masks, nor for ``within_last`` (the
    source's clock). A value that cannot be compared with the filter's literal is left alone."""
    if spec.get("aggregate") or (spec.get("transform") or {}).get("sql") or (spec.get("transform") or {}).get("python"):
        return []
    changed = {c.get("column") for c in spec.get("cleaning") or []} | {p.get("column") for p in spec.get("pii") or []}
    out = []
    for f in spec.get("filters") or []:
        column = f.get("column") or ""
        if "." in column or column in changed or f.get("op") == "within_last":
            continue
        col = _find(columns, column, spec)
        bad = next((r for r in rows if col and _keeps(f, r.get(col)) is False), None) if col else None
        if bad is not None:
            where = f"{column} {f.get('op')}" + ("" if f.get("op") in ("is_null", "not_null") else f" {f.get('value')!r}")
            out.append(_err("result-filter", f"the sample's result keeps a row with {col}={bad.get(col)!r}; the spec "
                                             f"keeps only rows where {where}"))
    return out


def _keeps(f: dict, value: Any) -> Optional[bool]:
    """Whether filter ``f`` keeps a row whose column holds ``value``; None when that cannot be told safely."""
    op, lit = f.get("op"), f.get("value")
    if op == "is_null":
        return value is None
    if op == "not_null":
        return value is not None
    if value is None:
        return False  # SQL: NULL matches no comparison (dialect.py means the same in every engine)
    value = _typed_time(value)
    if op in ("in", "not_in"):
        found = [_equal(value, v) for v in lit or []]
        if None in found and True not in found:
            return None
        return (True in found) == (op == "in")
    if op == "contains":
        return str(lit) in value if isinstance(value, str) else None
    if op == "between":
        low, high = (lit or [None, None])[:2]
        upper = _next_day(high) if _plain_date(high) and isinstance(value, dt.datetime) else None
        above = _compare(value, low)
        below = _compare(value, upper) if upper is not None else _compare(value, high)
        if above is None or below is None:
            return None
        return above >= 0 and (below < 0 if upper is not None else below <= 0)
    cmp = _compare(value, lit)
    if cmp is None:
        return None
    return {"=": cmp == 0, "!=": cmp != 0, ">": cmp > 0, ">=": cmp >= 0, "<": cmp < 0, "<=": cmp <= 0}.get(op)


def _equal(value: Any, lit: Any) -> Optional[bool]:
    cmp = _compare(value, lit)
    return None if cmp is None else cmp == 0


def _typed_time(value: Any) -> Any:
    """ISO text (a CSV or JSON sample) as the date or datetime a database would compare."""
    if not isinstance(value, str) or not re.match(r"\d{4}-\d{2}-\d{2}", value) or not _iso_time(value):
        return value
    when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when.date() if _plain_date(value) else when


def _plain_date(v: Any) -> bool:
    return isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) is not None


def _next_day(v: str) -> dt.datetime:
    return dt.datetime.fromisoformat(v) + dt.timedelta(days=1)


def _compare(value: Any, lit: Any) -> Optional[int]:
    """-1, 0, 1 comparing a result value with a filter literal as SQL would; None when of unlike kinds."""
    a, b = _as_comparable(value, lit)
    if a is None or b is None:
        return None
    try:
        return (a > b) - (a < b)
    except TypeError:
        return None


def _as_comparable(value: Any, lit: Any) -> tuple[Any, Any]:
    if isinstance(value, bool) or isinstance(lit, bool):
        return (value, lit) if isinstance(value, bool) and isinstance(lit, bool) else (None, None)
    if _is_number(value):
        try:
            return decimal.Decimal(str(value)), decimal.Decimal(str(lit))
        except decimal.InvalidOperation:
            return None, None
    if isinstance(value, (dt.date, dt.datetime)) and isinstance(lit, (str, dt.date)):
        try:
            when = lit if isinstance(lit, dt.date) else dt.datetime.fromisoformat(lit.replace("Z", "+00:00"))
        except ValueError:
            return None, None
        if isinstance(value, dt.datetime):
            if not isinstance(when, dt.datetime):
                when = dt.datetime.combine(when, dt.time())
            if (value.tzinfo is None) != (when.tzinfo is None):
                value, when = value.replace(tzinfo=None), when.replace(tzinfo=None)
            return value, when
        return value, when.date() if isinstance(when, dt.datetime) else when
    if isinstance(value, str) and isinstance(lit, (str, int, float)):
        return value, str(lit)
    return None, None
