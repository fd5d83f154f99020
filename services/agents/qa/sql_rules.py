"""Static safety rules for generated SQL (DESIGN.md §8, docs/SECURITY.md).

Three checks, one per place SQL runs:

- ``check_source_sql``    extraction SQL: one read-only SELECT over user tables;
- ``check_target_sql``    target DDL/DML: CREATE / INSERT / ALTER on the declared target only, plain
                          tables on PostgreSQL, MergeTree-family engines on ClickHouse;
- ``check_transform_sql`` DuckDB transform: one read-only SELECT over the relation ``batch`` only.

Statements are counted with sqlparse (its splitter copes with dollar quoting and
vendor syntax sqlglot may not parse) and each one is parsed with sqlglot in the
engine's dialect, after Unicode-escaped identifiers and strings (PostgreSQL ``U&"..."``)
are decoded, so ``U&"pg_r\\0065ad_file"`` is seen as ``pg_read_file``. Names are compared
case-insensitively. Functions are an ALLOW-list per dialect (:data:`ALLOWED_FUNCTIONS`):
sqlglot's typed standard functions plus the dialect's plain functions named there, minus
anything that sleeps, reads files, reaches other servers or changes server state. System
catalogs (``pg_*``, ``information_schema``, ClickHouse ``system``) and the platform's schema
``aietl_meta`` are never read. Every message names the statement and the object so the
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

# Plain (non-typed) functions each dialect may call; sqlglot's typed functions (exp.Sum, exp.Lower,
# exp.TimestampTrunc, ...) are the standard library and pass unless denied below. Everything else is
# refused: an unknown name may read files, reach the network or administer the server.
_COMMON_FUNCTIONS = frozenset({
    "abs", "avg", "ceil", "ceiling", "coalesce", "concat", "count", "floor", "greatest", "least", "length",
    "lower", "upper", "max", "min", "nullif", "round", "sum", "trim", "ltrim", "rtrim", "replace", "substr",
    "substring", "sign", "sqrt", "power", "pow", "exp", "ln", "log", "log10", "mod", "trunc", "if", "ifnull",
    "row_number", "rank", "dense_rank", "lag", "lead", "first_value", "last_value", "ntile", "percent_rank",
    "cume_dist", "nth_value", "md5", "sha256", "sha1", "hex", "unhex", "left", "right", "reverse", "position",
    "date", "now", "stddev", "variance", "corr", "median",
})
ALLOWED_FUNCTIONS: dict[str, frozenset[str]] = {
    "postgres": _COMMON_FUNCTIONS | frozenset({
        "to_char", "to_date", "to_timestamp", "to_number", "date_part", "date_trunc", "date_bin", "age",
        "extract", "make_date", "make_time", "make_timestamp", "make_timestamptz", "make_interval", "timezone",
        "justify_days", "justify_hours", "justify_interval", "isfinite", "clock_timestamp", "statement_timestamp",
        "transaction_timestamp", "localtimestamp", "initcap", "char_length", "character_length", "octet_length",
        "bit_length", "strpos", "split_part", "concat_ws", "btrim", "lpad", "rpad", "translate", "regexp_replace",
        "regexp_match", "regexp_matches", "regexp_split_to_array", "regexp_count", "regexp_like", "regexp_substr",
        "starts_with", "ascii", "chr", "format", "quote_ident", "quote_literal", "quote_nullable", "encode",
        "decode", "sha224", "sha384", "sha512", "to_hex", "string_agg", "array_agg", "json_agg", "jsonb_agg",
        "json_object_agg", "jsonb_object_agg", "bool_and", "bool_or", "every", "bit_and", "bit_or", "stddev_pop",
        "stddev_samp", "var_pop", "var_samp", "covar_pop", "covar_samp", "regr_slope", "regr_intercept",
        "percentile_cont", "percentile_disc", "mode", "width_bucket", "cbrt", "degrees", "radians", "div",
        "gcd", "lcm", "factorial", "pi", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "random",
        "gen_random_uuid", "array_length", "array_position", "array_positions", "array_remove", "array_replace",
        "array_cat", "array_append", "array_prepend", "array_to_string", "string_to_array", "cardinality",
        "array_lower", "array_upper", "array_dims", "unnest", "to_json", "to_jsonb", "row_to_json",
        "json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array", "json_object",
        "jsonb_object", "json_extract_path", "json_extract_path_text", "jsonb_extract_path",
        "jsonb_extract_path_text", "json_array_length", "jsonb_array_length", "json_typeof", "jsonb_typeof",
        "jsonb_set", "jsonb_insert", "jsonb_strip_nulls", "json_strip_nulls", "jsonb_pretty", "jsonb_path_query",
        "jsonb_path_query_first", "jsonb_path_exists", "json_array_elements", "jsonb_array_elements",
        "json_array_elements_text", "jsonb_array_elements_text", "json_each", "jsonb_each", "json_each_text",
        "jsonb_each_text", "json_object_keys", "jsonb_object_keys", "generate_series", "num_nonnulls",
        "num_nulls", "scale", "min_scale", "trim_scale", "to_ascii", "overlay", "bool", "int4", "int8", "numeric",
        "float8", "text", "lower_inc", "upper_inc", "isempty", "range_merge", "daterange", "tsrange", "tstzrange",
        "int4range", "int8range", "numrange", "first", "last",
    }),
    "clickhouse": _COMMON_FUNCTIONS | frozenset({
        "todate", "todatetime", "tostring", "tofixedstring", "toint8", "toint16", "toint32", "toint64",
        "touint8", "touint16", "touint32", "touint64", "tofloat32", "tofloat64", "todecimal32", "todecimal64",
        "todecimal128", "toint32ornull", "toint64ornull", "tofloat64ornull", "todateornull", "todatetimeornull",
        "toint32orzero", "toint64orzero", "tofloat64orzero", "todecimal64ornull", "touuid", "touuidornull",
        "tostartofday", "tostartofhour", "tostartofminute", "tostartoffiveminute", "tostartoffifteenminutes",
        "tostartofmonth", "tostartofquarter", "tostartofyear", "tostartofweek", "tomonday", "tostartofinterval",
        "toyear", "toquarter", "tomonth", "todayofmonth", "todayofweek", "todayofyear", "tohour", "tominute",
        "tosecond", "toyyyymm", "toyyyymmdd", "toyyyymmddhhmmss", "toweek", "toisoweek", "toisoyear",
        "torelativedaynum", "torelativehournum", "torelativemonthnum", "tounixtimestamp", "fromunixtimestamp",
        "totime", "today", "yesterday", "datediff", "date_diff", "dateadd", "date_add", "datesub", "date_sub",
        "adddays", "addhours", "addminutes", "addseconds", "addmonths", "addweeks", "addyears", "subtractdays",
        "subtracthours", "subtractminutes", "subtractseconds", "subtractmonths", "subtractweeks",
        "subtractyears", "tointervalday", "tointervalhour", "tointervalminute", "tointervalsecond",
        "tointervalmonth", "tointervalweek", "tointervalyear", "formatdatetime", "parsedatetimebesteffort",
        "parsedatetimebesteffortornull", "parsedatetimebesteffortorzero", "totimezone", "timezone",
        "lowerutf8", "upperutf8", "lengthutf8", "substringutf8", "reverseutf8", "trimboth", "trimleft",
        "trimright", "replaceall", "replaceone", "replaceregexpall", "replaceregexpone", "match", "extract",
        "extractall", "like", "notlike", "ilike", "positioncaseinsensitive", "positionutf8", "locate",
        "splitbychar", "splitbystring", "splitbyregexp", "arraystringconcat", "concatws", "leftpad", "rightpad",
        "empty", "notempty", "isnull", "isnotnull", "assumenotnull", "tonullable", "multiif", "nullif",
        "cityhash64", "siphash64", "halfmd5", "murmurhash3_64", "xxhash64", "farmhash64", "javahash",
        "sha224", "sha512", "base64encode", "base64decode", "trybase64decode", "generateuuidv4", "rand",
        "rand64", "tuple", "tupleelement", "array", "has", "hasall", "hasany", "indexof", "arraymap",
        "arrayfilter", "arrayexists", "arrayall", "arraysum", "arraycount", "arrayjoin", "arrayelement",
        "arrayconcat", "arraysort", "arrayreversesort", "arraydistinct", "arrayuniq", "arrayslice",
        "arraypushback", "arraypushfront", "arrayreverse", "arrayflatten", "arraycompact", "arrayenumerate",
        "arrayzip", "arrayfirst", "arraylast", "arraymin", "arraymax", "arrayavg", "length", "notin",
        "any", "anylast", "anyheavy", "argmax", "argmin", "uniq", "uniqexact", "uniqcombined", "uniqhll12",
        "grouparray", "groupuniqarray", "grouparrayinsertat", "topk", "quantile", "quantiles",
        "quantileexact", "quantiletiming", "quantiledeterministic", "median", "medianexact", "varpop",
        "varsamp", "stddevpop", "stddevsamp", "covarpop", "covarsamp", "sumwithoverflow", "summap",
        "grouparraymovingsum", "simplelinearregression", "count", "countif", "sumif", "avgif", "minif",
        "maxif", "uniqif", "jsonextract", "jsonextractstring", "jsonextractint", "jsonextractuint",
        "jsonextractfloat", "jsonextractbool", "jsonextractraw", "jsonextractkeys", "jsonhas", "jsonlength",
        "jsontype", "visitparamextractstring", "visitparamextractint", "visitparamextractuint",
        "visitparamextractfloat", "visitparamextractbool", "visitparamextractraw", "visitparamhas", "tojsonstring",
        "greatest", "least", "intdiv", "intdivorzero", "modulo", "moduloorzero", "negate", "gcd", "lcm",
        "roundbankers", "rounddown", "roundtoexp2", "e", "pi", "cbrt", "exp2", "exp10", "log2", "sin", "cos",
        "tan", "asin", "acos", "atan", "erf", "erfc", "lgamma", "tgamma", "bitand", "bitor", "bitxor",
        "bitnot", "bitshiftleft", "bitshiftright", "tocolumntypename", "totypename", "equals", "notequals",
        "less", "greater", "lessorequals", "greaterorequals", "and", "or", "not", "xor", "plus", "minus",
        "multiply", "divide", "emptyarrayuint8", "emptyarraystring", "ifnotfinite", "isfinite", "isinfinite",
        "isnan", "toyearweek", "datename", "monthname", "domain", "domainwithoutwww", "protocol", "path",
        "querystring", "fragment", "cutquerystring", "extracturlparameter", "formatreadablesize",
        "formatreadablequantity", "tolowcardinality", "tostartofsecond", "char", "concatassumeinjective",
        "startswith", "endswith", "countequal", "countmatches", "ngramdistance", "levenshteindistance",
        "numbers", "numbers_mt", "values",  # row generators: capped by _generator_problem
    }),
    "duckdb": _COMMON_FUNCTIONS | frozenset({
        "date_trunc", "date_part", "date_diff", "datediff", "date_add", "date_sub", "strftime", "strptime",
        "try_strptime", "epoch", "epoch_ms", "make_date", "make_timestamp", "to_timestamp", "age", "extract",
        "regexp_replace", "regexp_matches", "regexp_extract", "regexp_full_match", "regexp_split_to_array",
        "string_split", "str_split", "split_part", "concat_ws", "lpad", "rpad", "instr", "strpos", "contains",
        "starts_with", "ends_with", "prefix", "suffix", "lcase", "ucase", "initcap", "list_value", "list_concat",
        "array_length", "len", "list_contains", "list_aggregate", "unnest", "struct_pack", "struct_extract",
        "json_extract", "json_extract_string", "to_json", "json_object", "json_array", "string_agg", "list",
        "array_agg", "group_concat", "bool_and", "bool_or", "any_value", "arg_max", "arg_min", "count_if",
        "quantile", "quantile_cont", "quantile_disc", "mode", "approx_count_distinct", "hash", "uuid",
        "gen_random_uuid", "greatest", "least", "ifnull", "nvl", "try_cast", "printf", "format", "chr", "ascii",
        "unicode", "strip_accents", "nfc_normalize", "levenshtein", "jaccard", "damerau_levenshtein",
        "dayname", "monthname", "year", "month", "day", "hour", "minute", "second", "week", "quarter",
        "dayofweek", "dayofyear", "isodow", "yearweek", "last_day", "current_date", "today", "random",
    }),
    "sqlite": _COMMON_FUNCTIONS | frozenset({
        "datetime", "julianday", "strftime", "time", "unixepoch", "instr", "printf", "format", "quote",
        "group_concat", "total", "typeof", "json_extract", "json_object", "json_array", "json", "char",
        "unicode", "random", "iif", "likelihood", "likely", "unlikely", "zeroblob", "glob_match",
    }),
}
# Typed sqlglot functions that read files, run models or reveal server and session details.
_DENIED_TYPED = frozenset(n for n in (
    "ReadCSV", "ReadParquet", "ToFile", "Predict", "AIAgg", "AISummarizeAgg", "CurrentDatabase", "CurrentSchema",
    "CurrentSchemas", "CurrentUser", "CurrentUserId", "CurrentVersion", "SessionUser", "CurrentSession",
    "CurrentOrganizationUser") if hasattr(exp, n))
# sqlglot keeps aggregate combinators (sumIf, uniqExactOrNull) as one name; the base must be allowed.
_CH_COMBINATORS = ("if", "array", "distinct", "ornull", "ordefault", "state", "merge", "foreach", "resample")
_NAMED_FUNCS = tuple(t for t in (getattr(exp, n, None) for n in (
    "Anonymous", "AnonymousAggFunc", "CombinedAggFunc", "CombinedParameterizedAgg", "ParameterizedAgg"))
    if isinstance(t, type))

# Table functions a source may read from, with the argument index that bounds the rows they generate.
_SOURCE_TABLE_FUNCTIONS = {
    "postgres": frozenset({"unnest", "generate_series", "exploding_generate_series", "json_array_elements", "jsonb_array_elements",
                           "json_each", "jsonb_each", "jsonb_array_elements_text", "json_array_elements_text"}),
    "clickhouse": frozenset({"numbers", "numbers_mt", "values"}),
    "duckdb": frozenset({"unnest", "range", "generate_series", "exploding_generate_series"}),
    "sqlite": frozenset(),
}
MAX_GENERATED_ROWS = 1_000_000

# Never read or written by a pipeline: system catalogs and the platform's own bookkeeping schema.
SYSTEM_SCHEMAS: dict[str, frozenset[str]] = {
    "postgres": frozenset({"pg_catalog", "information_schema", "pg_toast", "aietl_meta"}),
    "clickhouse": frozenset({"system", "information_schema"}),
    "duckdb": frozenset({"information_schema", "pg_catalog", "system", "temp"}),
    "sqlite": frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master"}),
}
SYSTEM_TABLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "postgres": ("pg_",), "clickhouse": (), "duckdb": ("duckdb_", "pg_", "sqlite_"), "sqlite": ("sqlite_",),
}

# Target DDL: the engines and table properties a pipeline's target may have.
MERGETREE_ENGINES = frozenset({"mergetree", "replacingmergetree", "summingmergetree", "aggregatingmergetree",
                               "collapsingmergetree", "versionedcollapsingmergetree"})
_CH_TABLE_SETTINGS = frozenset({"index_granularity", "index_granularity_bytes"})
_TARGET_PROPERTIES: dict[str, frozenset[str]] = {
    "clickhouse": frozenset({"EngineProperty", "PartitionedByProperty", "Order", "PrimaryKey", "MergeTreeTTL",
                             "SettingsProperty", "SchemaCommentProperty", "SampleProperty"}),
    "postgres": frozenset({"UnloggedProperty"}),
    "duckdb": frozenset(),
    "sqlite": frozenset(),
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
    dialect: str = ""   # sqlglot dialect name

    @property
    def prefix(self) -> str:
        return f"statement {self.index} of {self.total}: " if self.total > 1 else ""


# ---------------------------------------------------------------- public checks


def check_source_sql(sql: str, dialect: str) -> list[Finding]:
    """Extraction SQL: exactly one read-only SELECT (or WITH ... SELECT) over user tables."""
    what = "source SQL"
    stmts, findings = _parse(sql, dialect, what=what)
    findings += _only_one(stmts, what)
    for st in _parsed(stmts):
        findings += _read_only_findings(st, what)
        if isinstance(st.tree, exp.Query):
            findings += _source_table_findings(st, what) + _clause_findings(st, what)
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
        findings += _target_table_function_findings(st)
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


class UnsafeSqlError(ValueError):
    """Deployed SQL that the rules above refuse (the executor checks again before running it)."""


def require_safe_sql(spec: dict, artifacts: dict) -> None:
    """The executor's second look at a deployment's SQL: raises UnsafeSqlError with every error finding.
    A version deployed before a rule was added, or one that never went through QA, is refused here."""
    source, target = spec.get("source") or {}, spec.get("target") or {}
    findings: list[Finding] = []
    if source.get("kind") in DIALECTS:
        for sql in (artifacts.get("extract_sql"), artifacts.get("extract_sql_initial"), source.get("query")):
            findings += check_source_sql(sql, source["kind"]) if sql else []
    if target.get("kind") in DIALECTS and target.get("table"):
        for sql in [*(artifacts.get("target_setup_sql") or []), artifacts.get("target_ddl")]:
            findings += check_target_sql(sql, target["kind"], target["table"]) if sql else []
    sql = artifacts.get("transform_sql") or (spec.get("transform") or {}).get("sql")
    findings += check_transform_sql(sql) if sql else []
    errors = [str(f) for f in findings if f.is_error]
    if errors:
        raise UnsafeSqlError("; ".join(errors))


def referenced_tables(sql: str, dialect: str) -> list[tuple[str, ...]]:
    """(db, table) or (table,) of every table ``sql`` names, lower-case, CTE names left out; for the
    platform-store guard (services/connectors/guards.py). Unparseable SQL names nothing here: the
    checks above refuse it."""
    stmts, _ = _parse(sql, dialect, what="SQL")
    out: list[tuple[str, ...]] = []
    for st in _parsed(stmts):
        ctes = _cte_names(st.tree)
        for table in st.tree.find_all(exp.Table):
            if table.name and not _is_cte_ref(table, ctes) and _parts(table) not in out:
                out.append(_parts(table))
    return out


# ---------------------------------------------------------------- splitting and parsing


def _parse(sql: str, dialect: str, *, what: str) -> tuple[list[_Statement], list[Finding]]:
    """Split with sqlparse, parse each piece with sqlglot; parse errors become findings."""
    read = DIALECTS.get((dialect or "").lower())
    if read is None:
        msg = f"unsupported dialect {dialect!r} for {what}; expected one of {sorted(set(DIALECTS))}"
        return [], [Finding("dialect", "error", msg)]
    sql = _PLACEHOLDER.sub("NULL", normalise_identifiers(sql or ""))
    pieces = _split(sql)
    if not pieces:
        return [], [Finding("empty", "error", f"{what} is empty: expected one statement")]
    stmts: list[_Statement] = []
    findings: list[Finding] = []
    for i, (text, line, col) in enumerate(pieces, 1):
        st = _Statement(i, len(pieces), text, line, col, dialect=read)
        tree, err = _parse_one(st, read)
        findings += [err] if err else []
        stmts.append(replace(st, tree=tree))
    return stmts, findings


# PostgreSQL U&"..." / U&'...' with \\XXXX, \\+XXXXXX and an optional UESCAPE 'c'.
_UNICODE_ESCAPED = re.compile(r"""[Uu]&(?P<q>["'])(?P<body>(?:(?!(?P=q)).|(?P=q)(?P=q))*)(?P=q)"""
                              r"""(?:\s*UESCAPE\s*'(?P<esc>[^'])')?""", re.S | re.I)


# The executor binds the stored cursor as %(cursor)s; sqlglot's ClickHouse parser does not know pyformat.
_PLACEHOLDER = re.compile(r"%\(cursor\)s")


def normalise_identifiers(sql: str) -> str:
    """Decode Unicode-escaped identifiers and strings, so every later rule sees the names the server will:
    ``U&"pg_r\\0065ad_file"`` becomes ``"pg_read_file"``. Re-quoted, so the statement's shape is kept."""
    def decode(m: re.Match) -> str:
        q, esc = m.group("q"), m.group("esc") or "\\"
        body = m.group("body").replace(q + q, q)
        e = re.escape(esc)
        text = re.sub(rf"{e}(?:\+([0-9A-Fa-f]{{6}})|([0-9A-Fa-f]{{4}})|({e}))",
                      lambda u: esc if u.group(3) else chr(int(u.group(1) or u.group(2), 16)), body)
        return q + text.replace(q, q + q) + q
    return _UNICODE_ESCAPED.sub(decode, sql)


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
    """Every function call, one finding at most each: side effects first, then qualification, the allow-list
    of the dialect and the row caps of generators."""
    out = []
    for fn in st.tree.find_all(exp.Func):
        if isinstance(fn.parent, exp.EngineProperty):
            continue  # ENGINE = X(...) is checked by the engine rule
        name = _func_name(fn)
        reason = _side_effect(name)
        if reason:
            rule, msg = "side-effect-function", f"function {name}() {reason}"
        else:
            rule, msg = "function-not-allowed", _function_problem(fn, name, st.dialect)
            if not msg:
                continue
        out.append(Finding(rule, "error", f"{st.prefix}{msg}: not allowed in {what}", st.text))
    return out


def _function_problem(fn: exp.Func, name: str, dialect: str) -> str | None:
    if isinstance(fn.parent, exp.Dot) and fn.parent.expression is fn:
        return f"function {fn.parent.sql(dialect=dialect).split('(')[0]}() is schema-qualified (user-defined or system)"
    if "\\" in name or not name.replace("_", "").isalnum():
        return f"function {name!r}() has escape sequences or unusual characters in its name"
    if isinstance(fn, _NAMED_FUNCS):
        if not _plain_function_allowed(name, dialect):
            return f"function {name}() is not on the {dialect} allow-list"
    elif type(fn).__name__ in _DENIED_TYPED:
        return f"function {name}() reads files, runs models or reveals server details"
    return _generator_problem(fn, name)


def _plain_function_allowed(name: str, dialect: str) -> bool:
    allowed = ALLOWED_FUNCTIONS.get(dialect, frozenset())
    if name in allowed:
        return True
    if dialect == "clickhouse":  # aggregate combinators: sumIf, uniqExactOrNull, avgState ...
        base = name
        while True:
            suffix = next((c for c in _CH_COMBINATORS if base.endswith(c) and len(base) > len(c)), None)
            if suffix is None:
                return False
            base = base[: -len(suffix)]
            if base in allowed:
                return True
    return False


_GENERATORS = {"generate_series": (0, 1, 2), "generateseries": (0, 1, 2), "explodinggenerateseries": (0, 1, 2),
               "range": (0, 1, 2), "numbers": None, "numbers_mt": None}


def _generator_problem(fn: exp.Func, name: str) -> str | None:
    """generate_series / numbers / range generate rows from nothing: literal bounds under MAX_GENERATED_ROWS."""
    key = name.replace("_", "") if name.replace("_", "") in _GENERATORS else name
    if key not in _GENERATORS:
        return None
    args = [a for a in (fn.args.get("start"), fn.args.get("end"), fn.args.get("step")) if a is not None] \
        if not isinstance(fn, _NAMED_FUNCS) else list(fn.expressions)
    values = [_number(a) for a in args]
    if not values or any(v is None for v in values):
        return f"function {name}() needs literal numeric bounds (at most {MAX_GENERATED_ROWS:,} rows)"
    if _GENERATORS[key] is None:  # numbers(N) / numbers(offset, N)
        rows = values[-1]
    elif len(values) == 1:  # range(N)
        rows = values[0]
    else:  # generate_series(start, stop[, step]) / range(start, stop[, step])
        step = values[2] if len(values) > 2 else 1
        if step == 0:
            return f"function {name}() with step 0 never ends"
        rows = (values[1] - values[0]) / step + 1
    if rows > MAX_GENERATED_ROWS:
        return f"function {name}() would generate {rows:,.0f} rows (at most {MAX_GENERATED_ROWS:,})"
    return None


def _number(node) -> float | None:
    if isinstance(node, exp.Neg):
        inner = _number(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Paren):
        return _number(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return None


def _source_table_findings(st: _Statement, what: str) -> list[Finding]:
    """Only the connection's user tables: no system catalogs, no platform schema, no table functions that
    read files, other servers or dictionaries."""
    out, ctes = [], _cte_names(st.tree)
    for table in st.tree.find_all(exp.Table):
        if isinstance(table.this, exp.Func) or _looks_like_call(table):
            name = _func_name(table.this) if isinstance(table.this, exp.Func) else table.name.lower()
            if not _side_effect(name) and name not in _SOURCE_TABLE_FUNCTIONS.get(st.dialect, ()):
                msg = f"{st.prefix}table function {name}() reads outside the connection's tables: not allowed in {what}"
                out.append(Finding("table-function", "error", msg, st.text))
            continue
        problem = _system_table_problem(table, ctes, st.dialect)
        if problem:
            out.append(Finding("system-catalog", "error", f"{st.prefix}{problem}: not allowed in {what}", st.text))
    return out


def _looks_like_call(table: exp.Table) -> bool:
    """sqlglot reads ClickHouse ``dictionary('d')`` as the table ``dictionary`` with alias columns ('d'):
    a table "aliased" by a column list only is a call to the server, whatever the parser made of it."""
    alias = table.args.get("alias")
    return bool(alias is not None and alias.args.get("columns") and not alias.name)


def _system_table_problem(table: exp.Table, ctes: set[str], dialect: str) -> str | None:
    if not table.name or _is_cte_ref(table, ctes):
        return None
    parts = _parts(table)
    schemas = SYSTEM_SCHEMAS.get(dialect, frozenset())
    if any(p in schemas for p in parts[:-1]) or (len(parts) == 1 and parts[0] in schemas):
        return f"reads {_table_name(table)}, a system catalog or the platform's own schema"
    if len(parts) == 1 and parts[0].startswith(SYSTEM_TABLE_PREFIXES.get(dialect, ())):
        return f"reads {_table_name(table)}, a system catalog (pg_* resolves to pg_catalog)"
    return None


def _clause_findings(st: _Statement, what: str) -> list[Finding]:
    """Clauses that change how the server runs the read: SETTINGS (would lift the platform's caps),
    FORMAT, and recursive CTEs (unbounded)."""
    out = []
    for select in st.tree.find_all(exp.Select):
        for clause in ("settings", "format"):
            if select.args.get(clause):
                msg = f"{st.prefix}the {clause.upper()} clause changes how the server runs the read: not allowed in {what}"
                out.append(Finding("query-settings", "error", msg, st.text))
    for with_ in st.tree.find_all(exp.With):
        if with_.args.get("recursive"):
            msg = f"{st.prefix}WITH RECURSIVE is unbounded: not allowed in {what}"
            out.append(Finding("recursive-cte", "error", msg, st.text))
    return out


def _target_table_function_findings(st: _Statement) -> list[Finding]:
    out = []
    if isinstance(st.tree, exp.Insert) and st.tree.args.get("is_function"):
        name = _func_name(st.tree.this) if isinstance(st.tree.this, exp.Func) else "?"
        out.append(Finding("target-only", "error",
                           f"{st.prefix}INSERT INTO FUNCTION {name}() writes outside the target: not allowed in target SQL",
                           st.text))
    for table in st.tree.find_all(exp.Table):
        name = _func_name(table.this) if isinstance(table.this, exp.Func) else table.name.lower()
        if (isinstance(table.this, exp.Func) or _looks_like_call(table)) and not _side_effect(name):
            msg = f"{st.prefix}table function {name}() reads outside the target: not allowed in target SQL"
            out.append(Finding("table-function", "error", msg, st.text))
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
               "use CREATE TABLE IF NOT EXISTS")
        return own, [Finding("target-replace", "error", msg, st.text)]
    return own, _table_property_findings(st, tname) if kind == "TABLE" else []


def _table_property_findings(st: _Statement, tname: str) -> list[Finding]:
    """Plain tables on PostgreSQL; MergeTree-family engines (and their ordinary clauses) on ClickHouse.
    Other engines read or write elsewhere: Buffer flushes into another table, Merge/Distributed read
    other tables (system too), Kafka/URL/File/SQLite/MySQL/... reach other systems."""
    props = st.tree.args.get("properties")
    found = list(props.expressions) if props else []
    allowed = _TARGET_PROPERTIES.get(st.dialect, frozenset())
    out = []
    for prop in found:
        kind = type(prop).__name__
        if kind not in allowed:
            msg = f"{st.prefix}CREATE TABLE {tname}: {prop.sql(dialect=st.dialect)[:80]} is not allowed in target SQL"
            out.append(Finding("target-table-kind", "error", msg, st.text))
        elif isinstance(prop, exp.EngineProperty):
            out += _engine_findings(st, tname, prop)
        elif isinstance(prop, exp.SettingsProperty):
            out += _table_settings_findings(st, tname, prop)
    if st.dialect == "clickhouse" and not any(isinstance(p, exp.EngineProperty) for p in found):
        msg = f"{st.prefix}CREATE TABLE {tname} needs ENGINE = a MergeTree-family engine (e.g. ReplacingMergeTree)"
        out.append(Finding("target-table-kind", "error", msg, st.text))
    return out


def _engine_findings(st: _Statement, tname: str, prop: exp.EngineProperty) -> list[Finding]:
    engine = prop.this
    name = _func_name(engine) if isinstance(engine, exp.Func) else str(engine.name if hasattr(engine, "name") and
                                                                        engine.name else engine.sql()).lower()
    if name in MERGETREE_ENGINES:
        return []
    msg = (f"{st.prefix}CREATE TABLE {tname}: ENGINE {name} is not allowed; use a MergeTree-family engine "
           f"({', '.join(sorted(MERGETREE_ENGINES))})")
    return [Finding("target-table-kind", "error", msg, st.text)]


def _table_settings_findings(st: _Statement, tname: str, prop: exp.SettingsProperty) -> list[Finding]:
    out = []
    for setting in prop.expressions:
        key = setting.this if isinstance(setting, exp.EQ) else setting
        name = (key.name if isinstance(key, (exp.Column, exp.Identifier)) else key.sql()).lower()
        if name not in _CH_TABLE_SETTINGS:
            msg = f"{st.prefix}CREATE TABLE {tname}: setting {name} is not allowed in target SQL"
            out.append(Finding("target-table-kind", "error", msg, st.text))
    return out


def _create_database_findings(st: _Statement, target: exp.Table, kind: str
                              ) -> tuple[exp.Table | None, list[Finding]]:
    table = st.tree.find(exp.Table)
    created = _parts(table) if table else ()
    qualifiers = tuple(p.lower() for p in (target.catalog, target.db) if p)
    # CREATE SCHEMA shop / CREATE DATABASE analytics for analytics.shop.orders: a prefix or suffix of the qualifiers.
    ok = bool(created) and (created == qualifiers[:len(created)] or created == qualifiers[-len(created):])
    props = st.tree.args.get("properties")
    if ok and props and props.expressions:  # CREATE DATABASE x ENGINE = MySQL(...) reaches another server
        msg = (f"{st.prefix}CREATE {kind} {'.'.join(created)}: "
               f"{props.expressions[0].sql(dialect=st.dialect)[:80]} is not allowed in target SQL")
        return table, [Finding("target-table-kind", "error", msg, st.text)]
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
    if isinstance(fn, _NAMED_FUNCS):
        return str(fn.name).lower()
    return fn.sql_name().lower()
