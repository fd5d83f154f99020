"""Static safety rules for generated SQL (DESIGN.md §8).

Three checks, one per place SQL runs:

- ``check_source_sql``    extraction SQL: one read-only SELECT;
- ``check_target_sql``    target DDL/DML: CREATE / INSERT / ALTER on the declared target only;
- ``check_transform_sql`` DuckDB transform: one read-only SELECT over the relation ``batch`` only.

Statements are counted with sqlparse (its splitter copes with dollar quoting and
vendor syntax sqlglot may not parse) and each one is parsed with sqlglot in the
engine's dialect. Every message names the statement and the object so the
reflector can repair it without guessing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import sqlglot
import sqlparse
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from services.agents.qa import Finding

# Connector kinds → sqlglot dialect names.
DIALECTS = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "clickhouse": "clickhouse",
    "duckdb": "duckdb",
    "sqlite": "sqlite",
}

# Functions that sleep, reach other servers, touch server files or change server state.
# Names are lower-case; one set for every dialect because none of these is harmless anywhere.
_SIDE_EFFECT_FUNCTIONS: dict[str, frozenset[str]] = {
    "sleeps": frozenset({"pg_sleep", "pg_sleep_for", "pg_sleep_until", "sleep", "sleepeachrow"}),
    "reaches another server": frozenset({
        "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query",
        "url", "remote", "remotesecure", "cluster", "clusterallreplicas", "s3", "s3cluster",
        "hdfs", "mysql", "postgresql", "jdbc", "odbc", "mongodb", "redis", "azureblobstorage",
        "gcs", "iceberg", "deltalake", "hudi", "postgres_scan", "postgres_attach", "mysql_scan",
        "iceberg_scan", "delta_scan",
    }),
    "runs SQL from a string": frozenset({"query", "query_table", "query_to_xml", "query_to_xml_and_xmlschema"}),
    "reads or writes files on the server": frozenset({
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import", "lo_export",
        "file", "input", "executable", "read_csv", "read_csv_auto", "read_parquet", "read_json",
        "read_json_auto", "read_ndjson", "read_ndjson_auto", "read_text", "read_blob", "parquet_scan",
        "parquet_metadata", "parquet_schema", "sqlite_scan", "sqlite_attach", "glob", "sniff_csv",
        "readfile", "writefile", "load_extension", "edit", "getenv",
    }),
    "changes server state": frozenset({
        "set_config", "nextval", "setval", "lo_create", "lo_unlink", "lo_from_bytea", "lo_put",
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
        "pg_switch_wal", "pg_create_restore_point", "pg_notify", "pg_promote", "pg_stat_reset",
        "pg_create_logical_replication_slot", "pg_drop_replication_slot", "txid_current",
    }),
}
# Whole families (advisory locks, large objects, file readers) are matched by prefix.
_SIDE_EFFECT_PREFIXES: dict[str, str] = {
    "pg_advisory": "takes advisory locks",
    "pg_try_advisory": "takes advisory locks",
    "lo_": "manipulates large objects",
    "dblink": "reaches another server",
    "pg_ls_": "reads or writes files on the server",
    "pg_read_": "reads or writes files on the server",
    "read_": "reads or writes files on the server",
}

# Statement types that write or change state; built by name so a sqlglot release
# lacking one of them does not break the import.
_WRITE_TYPES: tuple[type, ...] = tuple(
    t for t in (getattr(exp, n, None) for n in (
        "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "AlterTable", "Copy",
        "TruncateTable", "Command", "Grant", "Revoke", "Set", "Pragma", "Attach", "Detach",
        "Install", "Use", "Transaction", "Commit", "Rollback", "LoadData", "Analyze", "Refresh",
        "Cache", "Uncache", "Describe",
    )) if isinstance(t, type)
)

# Table functions a transform may use over batch columns (they read nothing else).
_TRANSFORM_TABLE_FUNCTIONS = frozenset({"unnest"})

TRANSFORM_RELATION = "batch"


@dataclass(frozen=True)
class _Statement:
    index: int          # 1-based
    total: int
    text: str
    line: int           # 1-based line of the statement's first character in the whole SQL
    col: int            # 1-based column of that character
    tree: exp.Expression | None = None

    @property
    def prefix(self) -> str:
        return f"statement {self.index} of {self.total}: " if self.total > 1 else ""


# ---------------------------------------------------------------- public checks


def check_source_sql(sql: str, dialect: str) -> list[Finding]:
    """Extraction SQL: exactly one read-only SELECT (or WITH ... SELECT)."""
    stmts, findings = _parse(sql, dialect, what="source SQL")
    findings += _only_one(stmts, "source SQL")
    for st in _parsed(stmts):
        findings += _read_only_findings(st, "source SQL")
    return findings


def check_target_sql(sql: str, dialect: str, target_table: str) -> list[Finding]:
    """Target SQL: CREATE TABLE/INSERT/ALTER on ``target_table`` and CREATE DATABASE/SCHEMA of its database."""
    target, bad = _parse_target(target_table, dialect)
    if bad:
        return [bad]
    stmts, findings = _parse(sql, dialect, what="target SQL")
    for st in _parsed(stmts):
        findings += _target_statement_findings(st, target)
        findings += _nested_write_findings(st, "target SQL")
        findings += _function_findings(st, "target SQL")
    return findings


def check_transform_sql(sql: str, dialect: str = "duckdb") -> list[Finding]:
    """Transform SQL: one read-only SELECT over the relation ``batch`` and nothing else."""
    what = "transform SQL"
    stmts, findings = _parse(sql, dialect, what=what)
    findings += _only_one(stmts, what)
    for st in _parsed(stmts):
        findings += _read_only_findings(st, what)
        findings += _transform_relation_findings(st)
    return findings


# ---------------------------------------------------------------- splitting and parsing


def _parse(sql: str, dialect: str, *, what: str) -> tuple[list[_Statement], list[Finding]]:
    """Split with sqlparse, parse each piece with sqlglot; parse errors become findings."""
    read = DIALECTS.get((dialect or "").lower())
    if read is None:
        msg = f"unsupported dialect {dialect!r} for {what}; expected one of {sorted(set(DIALECTS))}"
        return [], [Finding("dialect", "error", msg)]
    pieces = _split(sql)
    if not pieces:
        return [], [Finding("empty", "error", f"{what} is empty: expected one statement")]
    stmts: list[_Statement] = []
    findings: list[Finding] = []
    for i, (text, line, col) in enumerate(pieces, 1):
        st = _Statement(i, len(pieces), text, line, col)
        tree, err = _parse_one(st, read)
        findings += [err] if err else []
        stmts.append(replace(st, tree=tree))
    return stmts, findings


def _split(sql: str) -> list[tuple[str, int, int]]:
    """Non-empty statements with the line/column where each starts in ``sql``."""
    out, pos = [], 0
    for piece in sqlparse.split(sql or ""):
        start = sql.find(piece, pos)
        start = pos if start < 0 else start
        pos = start + len(piece)
        if _is_blank(piece):
            continue
        line = sql.count("\n", 0, start) + 1
        col = start - (sql.rfind("\n", 0, start) + 1) + 1
        out.append((piece, line, col))
    return out


def _is_blank(piece: str) -> bool:
    # Comment-only chunks and stray ';' are not statements.
    return not _strip_comments(piece).strip(";").strip()


def _strip_comments(text: str) -> str:
    return sqlparse.format(text, strip_comments=True).strip()


def _parse_one(st: _Statement, read: str) -> tuple[exp.Expression | None, Finding | None]:
    try:
        trees = [t for t in sqlglot.parse(st.text, read=read) if _is_statement(t)]
    except ParseError as e:
        return None, _parse_error_finding(st, e)
    except TokenError as e:
        return None, Finding("parse", "error", f"{st.prefix}cannot tokenize: {e}", st.text)
    if len(trees) != 1:
        # sqlparse and sqlglot disagree on boundaries; ask for one clear statement.
        msg = f"{st.prefix}parsed as {len(trees)} statements; write exactly one statement here"
        return (trees[0] if trees else None), Finding("parse", "error", msg, st.text)
    return trees[0], None


def _is_statement(tree: exp.Expression | None) -> bool:
    # sqlglot returns a Semicolon node to carry comments after the last ';'.
    semicolon = getattr(exp, "Semicolon", None)
    return tree is not None and not (semicolon and isinstance(tree, semicolon))


def _parse_error_finding(st: _Statement, e: ParseError) -> Finding:
    err = (e.errors or [{}])[0]
    line, col = err.get("line"), err.get("col")
    desc = err.get("description") or str(e)
    near = (err.get("highlight") or "").strip()
    if line is None or col is None:
        where = ""
    else:
        # sqlglot positions are relative to the statement; report them in the whole SQL.
        abs_col = col + st.col - 1 if line == 1 else col
        where = f" at line {line + st.line - 1}, col {abs_col}"
    near_txt = f" near {near!r}" if near else ""
    return Finding("parse", "error", f"{st.prefix}parse error{where}{near_txt}: {desc}", st.text)


def _parsed(stmts: list[_Statement]) -> list[_Statement]:
    return [s for s in stmts if s.tree is not None]


# ---------------------------------------------------------------- shared rules


def _only_one(stmts: list[_Statement], what: str) -> list[Finding]:
    return [
        Finding("single-statement", "error",
                f"{st.prefix}only one statement is allowed in {what}", st.text)
        for st in stmts[1:]
    ]


def _read_only_findings(st: _Statement, what: str) -> list[Finding]:
    tree = st.tree
    if not isinstance(tree, exp.Query):
        msg = f"{st.prefix}{_describe(tree)}: {what} must be read-only (a single SELECT or WITH ... SELECT)"
        return [Finding("read-only", "error", msg, st.text)]
    return (_nested_write_findings(st, what) + _into_findings(st, what)
            + _lock_findings(st, what) + _function_findings(st, what))


def _nested_write_findings(st: _Statement, what: str) -> list[Finding]:
    """Writes below the root, e.g. Postgres ``WITH x AS (DELETE ... RETURNING *) SELECT``."""
    out = []
    for node in st.tree.find_all(*_WRITE_TYPES):
        if node is st.tree:
            continue
        cte = node.find_ancestor(exp.CTE)
        where = f" inside CTE {cte.alias_or_name}" if cte else " inside the statement"
        msg = f"{st.prefix}{_describe(node)}{where}: {what} must not modify data (no data-modifying CTEs)"
        out.append(Finding("read-only", "error", msg, st.text))
    return out


def _into_findings(st: _Statement, what: str) -> list[Finding]:
    out = []
    for select in st.tree.find_all(exp.Select):
        into = select.args.get("into")
        if into:
            name = _table_name(into.find(exp.Table)) or "a new table"
            msg = f"{st.prefix}SELECT ... INTO {name} creates a table: {what} must be read-only (remove INTO)"
            out.append(Finding("read-only", "error", msg, st.text))
    return out


def _lock_findings(st: _Statement, what: str) -> list[Finding]:
    out = []
    for select in st.tree.find_all(exp.Select):
        for lock in select.args.get("locks") or []:
            clause = "FOR UPDATE" if lock.args.get("update") else "FOR SHARE"
            msg = f"{st.prefix}SELECT ... {clause} locks rows: {what} must not lock (remove {clause})"
            out.append(Finding("no-locking", "error", msg, st.text))
    return out


def _function_findings(st: _Statement, what: str) -> list[Finding]:
    out = []
    for fn in st.tree.find_all(exp.Func):
        name = _func_name(fn)
        reason = _side_effect(name)
        if reason:
            msg = f"{st.prefix}function {name}() {reason}: not allowed in {what}"
            out.append(Finding("side-effect-function", "error", msg, st.text))
    return out


def _side_effect(name: str) -> str | None:
    for reason, names in _SIDE_EFFECT_FUNCTIONS.items():
        if name in names:
            return reason
    return next((r for p, r in _SIDE_EFFECT_PREFIXES.items() if name.startswith(p)), None)


# ---------------------------------------------------------------- target rules


def _parse_target(target_table: str, dialect: str) -> tuple[exp.Table | None, Finding | None]:
    read = DIALECTS.get((dialect or "").lower())
    try:
        table = exp.to_table(target_table, dialect=read) if read and target_table else None
    except (ParseError, TokenError):
        table = None
    if table is None or not table.name:
        return None, Finding("target", "error", f"invalid declared target table {target_table!r}")
    return table, None


def _target_statement_findings(st: _Statement, target: exp.Table) -> list[Finding]:
    tree, tname = st.tree, _table_name(target)
    if isinstance(tree, exp.Create):
        own, findings = _create_findings(st, target)
    elif isinstance(tree, exp.Insert) or _is_alter_table(tree):
        own = _table_of(tree.this)
        findings = [] if _same(own, target) else [Finding(
            "target-only", "error",
            f"{st.prefix}{_describe(tree)}: target SQL may only write to the declared target {tname}", st.text)]
    elif isinstance(tree, exp.Query):
        own, findings = None, []
    else:
        msg = (f"{st.prefix}{_describe(tree)}: target SQL may only CREATE TABLE, INSERT into or ALTER "
               f"the declared target {tname} (and CREATE its database/schema)")
        return [Finding("target-only", "error", msg, st.text)]
    return findings + _other_table_findings(st, target, own)


def _create_findings(st: _Statement, target: exp.Table) -> tuple[exp.Table | None, list[Finding]]:
    tree, tname = st.tree, _table_name(target)
    kind = str(tree.args.get("kind") or "").upper()
    if kind in ("SCHEMA", "DATABASE"):
        return _create_database_findings(st, target, kind)
    if kind == "INDEX":
        own = tree.this.args.get("table") if isinstance(tree.this, exp.Index) else None
    elif kind == "TABLE":
        own = _table_of(tree.this)
    else:
        msg = f"{st.prefix}{_describe(tree)}: target SQL may only create the target table {tname} and its database/schema"
        return _table_of(tree.this), [Finding("target-only", "error", msg, st.text)]
    if not _same(own, target):
        msg = f"{st.prefix}{_describe(tree)}: target SQL may only create the declared target {tname}"
        return own, [Finding("target-only", "error", msg, st.text)]
    if tree.args.get("replace"):
        msg = (f"{st.prefix}CREATE OR REPLACE drops the existing {tname} and its data; "
               "prefer CREATE TABLE IF NOT EXISTS")
        return own, [Finding("target-replace", "warning", msg, st.text)]
    return own, []


def _create_database_findings(st: _Statement, target: exp.Table, kind: str
                              ) -> tuple[exp.Table | None, list[Finding]]:
    table = st.tree.find(exp.Table)
    created = _parts(table) if table else ()
    qualifiers = tuple(p.lower() for p in (target.catalog, target.db) if p)
    # CREATE SCHEMA shop / CREATE DATABASE analytics for analytics.shop.orders: a prefix or suffix of the qualifiers.
    ok = bool(created) and (created == qualifiers[:len(created)] or created == qualifiers[-len(created):])
    if ok:
        return table, []
    where = ".".join(qualifiers) or "(none: the target is unqualified)"
    kind = "DATABASE" if re.match(r"\s*CREATE\s+DATABASE", _strip_comments(st.text), re.I) else kind
    msg = (f"{st.prefix}CREATE {kind} {'.'.join(created) or '?'}: target SQL may only create the database/schema "
           f"of the declared target {_table_name(target)}, i.e. {where}")
    return table, [Finding("target-only", "error", msg, st.text)]


def _other_table_findings(st: _Statement, target: exp.Table, own: exp.Table | None) -> list[Finding]:
    """Any table other than the target (and CTE names) referenced anywhere in the statement."""
    out, seen = [], set()
    ctes = _cte_names(st.tree)
    for table in st.tree.find_all(exp.Table):
        if table is own or _same(table, target) or _is_cte_ref(table, ctes) or not table.name:
            continue
        name = _table_name(table)
        if name in seen:
            continue
        seen.add(name)
        msg = (f"{st.prefix}{_describe(st.tree)} references {name}: target SQL must not touch tables "
               f"other than {_table_name(target)}")
        out.append(Finding("target-only", "error", msg, st.text))
    return out


def _is_alter_table(tree: exp.Expression) -> bool:
    return _is_alter(tree) and str(tree.args.get("kind") or "TABLE").upper() == "TABLE"


# ---------------------------------------------------------------- transform rules


def _transform_relation_findings(st: _Statement) -> list[Finding]:
    out = []
    ctes = _cte_names(st.tree)
    for table in st.tree.find_all(exp.Table):
        msg = _transform_table_problem(table, ctes)
        if msg:
            out.append(Finding("batch-only", "error", f"{st.prefix}{msg}", st.text))
    return out


def _transform_table_problem(table: exp.Table, ctes: set[str]) -> str | None:
    if isinstance(table.this, exp.Func):
        name = _func_name(table.this)
        if name in _TRANSFORM_TABLE_FUNCTIONS or _side_effect(name):
            return None  # allowed, or already reported by the side-effect rule
        return f"table function {name}() is not allowed: transform SQL may only read the relation {TRANSFORM_RELATION}"
    if _is_cte_ref(table, ctes):
        return None
    if _parts(table) == (TRANSFORM_RELATION,):
        return None
    return f"reads {_table_name(table)}: transform SQL may only read the relation {TRANSFORM_RELATION}"


# ---------------------------------------------------------------- naming helpers


def _describe(node: exp.Expression) -> str:
    """'UPDATE on shop.orders', 'CREATE TABLE on x', 'CALL' ..."""
    kind = _kind(node)
    obj = _object_of(node)
    return f"{kind} on {obj}" if obj else kind


def _kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.TruncateTable):
        return "TRUNCATE"
    kind = node.args.get("kind")
    if isinstance(node, (exp.Create, exp.Drop)) or _is_alter(node):
        return f"{node.key.upper()} {str(kind).upper()}" if isinstance(kind, str) and kind else node.key.upper()
    return node.key.upper()


def _is_alter(node: exp.Expression) -> bool:
    return node.key in ("alter", "altertable")  # exp.Alter; exp.AlterTable before sqlglot 25


def _object_of(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Command) or isinstance(node, exp.Query):
        return None
    first = node.this if isinstance(node.this, exp.Expression) else None
    for cand in (first, *(node.args.get("tables") or []), *(node.args.get("expressions") or [])):
        table = _table_of(cand)
        if table is not None and table.name:
            return _table_name(table)
    table = node.find(exp.Table)
    return _table_name(table) if table is not None and table.name else None


def _table_of(node) -> exp.Table | None:
    if isinstance(node, exp.Schema):
        node = node.this
    if isinstance(node, exp.Index):
        node = node.args.get("table")
    return node if isinstance(node, exp.Table) else None


def _parts(table: exp.Table | None) -> tuple[str, ...]:
    if table is None:
        return ()
    # Case-insensitive: generated SQL rarely relies on quoted case to tell tables apart.
    return tuple(p.lower() for p in (table.catalog, table.db, table.name) if p)


def _same(a: exp.Table | None, b: exp.Table | None) -> bool:
    return a is not None and b is not None and bool(_parts(a)) and _parts(a) == _parts(b)


def _table_name(table: exp.Table | None) -> str:
    return ".".join(p for p in (table.catalog, table.db, table.name) if p) if table is not None else ""


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def _is_cte_ref(table: exp.Table, ctes: set[str]) -> bool:
    return not table.db and not table.catalog and table.name.lower() in ctes


def _func_name(fn: exp.Func) -> str:
    if isinstance(fn, exp.Anonymous):
        return str(fn.name).lower()
    return fn.sql_name().lower()
