"""The declarative pipeline spec: what a pipeline reads, how it transforms, where it loads, when it runs.

A :class:`PipelineSpec` is what the planner proposes, what the aggregate versions and what the executor runs.
It is plain data (pydantic v2, ``extra="forbid"`` so an LLM answer with invented fields fails loudly) and it
is exported as JSON Schema with ``PipelineSpec.model_json_schema()`` so prompts and the console can use it.

Secrets never live here: ``connection`` is the *name* of a connection whose credentials are stored
encrypted elsewhere.

The declarative intent (``filters``, ``aggregate``, ``cleaning``, ``pii``) is kept next to the concrete
code (``source.query``, ``transform.sql``, ``transform.python``) so the SQL expert can regenerate the code
from the intent and the QA validator can check that the code does what the intent says.
"""
from __future__ import annotations

import ast
import fnmatch
import re
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SPEC_VERSION = "1"

EngineKind = Literal["postgres", "clickhouse", "file", "kafka", "http", "sqlite"]
FileFormat = Literal["csv", "jsonl", "xml", "parquet"]
LoadMode = Literal["append", "replace", "merge"]
DATABASE_KINDS = ("postgres", "clickhouse", "sqlite")
FILE_EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "xml": "xml", "parquet": "parquet"}

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TABLE_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})?$")
_COLUMN_RE = re.compile(rf"^{_IDENT}$")
_COLUMN_REF_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})?$")
# A column pattern such as "*email*" (fnmatch syntax) lets a plan name columns it has not seen yet.
_COLUMN_PATTERN_RE = re.compile(r"^[A-Za-z0-9_*?\[\]]+$")
# Connection names are identifiers; anything looking like a DSN or URL may carry a password.
_CONNECTION_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


def _check_connection(value: Optional[str]) -> Optional[str]:
    if value is not None and not _CONNECTION_RE.match(value):
        raise ValueError("connection must be a connection name (letters, digits, _ . -), never a DSN or secret")
    return value


def _check_table(value: Optional[str]) -> Optional[str]:
    if value is not None and not _TABLE_RE.match(value):
        raise ValueError(f"table must look like 'schema.table' or 'table', got {value!r}")
    return value


def _format_from_path(path: str) -> Optional[str]:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return FILE_EXTENSIONS.get(ext)


class _Endpoint(_Model):
    """What sources and targets share: a kind, a connection name and one locator."""

    kind: EngineKind
    connection: Optional[str] = Field(default=None, description="connection NAME (credentials live elsewhere)")
    table: Optional[str] = Field(default=None, description="'schema.table' for database kinds")
    path: Optional[str] = Field(default=None, description="file path (relative to the connection's root)")
    format: Optional[FileFormat] = Field(default=None, description="file format; inferred from the extension")
    topic: Optional[str] = Field(default=None, description="Kafka topic")
    message_format: Optional[Literal["json", "avro"]] = Field(default=None, description="Kafka value encoding")

    @field_validator("connection")
    @classmethod
    def _connection_is_a_name(cls, v: Optional[str]) -> Optional[str]:
        return _check_connection(v)

    @field_validator("table")
    @classmethod
    def _table_is_qualified_name(cls, v: Optional[str]) -> Optional[str]:
        return _check_table(v)

    @field_validator("path")
    @classmethod
    def _path_is_relative_and_plain(cls, v: Optional[str]) -> Optional[str]:
        # Files are resolved under the connection's root; escaping it would read arbitrary files.
        if v is not None and (".." in v.split("/") or v.startswith("/") or "\x00" in v):
            raise ValueError("path must be relative to the file connection's root and must not contain '..'")
        return v

    def _fill_file_format(self) -> None:
        if self.kind == "file" and self.format is None and self.path:
            self.format = _format_from_path(self.path)  # type: ignore[assignment]


class Source(_Endpoint):
    query: Optional[str] = Field(default=None, description="read-only SELECT in the source dialect")
    url: Optional[str] = Field(default=None, description="HTTP JSON API endpoint (no credentials in it)")
    path_param: Optional[str] = Field(default=None,
                                      description="run parameter holding the file name (webhook-driven files)")
    folder: Optional[str] = Field(default=None, description="folder the path_param file is taken from")

    @model_validator(mode="after")
    def _locator_matches_kind(self) -> "Source":
        self._fill_file_format()
        problem = _source_problem(self)
        if problem:
            raise ValueError(problem)
        return self


def _source_problem(s: Source) -> Optional[str]:
    if s.kind in DATABASE_KINDS and not (s.table or s.query):
        return f"a {s.kind} source needs a table or a query"
    if s.query is not None and not re.match(r"^\s*(\(\s*)*(select|with)\b", s.query, re.I):
        return "source.query must be a read-only SELECT"
    if s.kind == "file" and not (s.path or s.path_param):
        return "a file source needs a path or a path_param"
    if s.kind == "file" and s.format is None:
        return "a file source needs a format (csv, jsonl, xml, parquet)"
    if s.kind == "kafka" and not s.topic:
        return "a kafka source needs a topic"
    if s.kind == "http" and not s.url:
        return "an http source needs a url"
    if s.url is not None and re.match(r"^[a-z]+://[^/]*@", s.url, re.I):
        return "url must not carry credentials; use a connection name"
    return None


class Target(_Endpoint):
    load_mode: LoadMode = "append"
    keys: list[str] = Field(default_factory=list, description="merge keys (required for load_mode merge)")

    @field_validator("keys")
    @classmethod
    def _keys_are_columns(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if not _COLUMN_RE.match(k)]
        if bad:
            raise ValueError(f"keys must be column names: {bad}")
        return v

    @model_validator(mode="after")
    def _locator_matches_kind(self) -> "Target":
        self._fill_file_format()
        problem = _target_problem(self)
        if problem:
            raise ValueError(problem)
        return self


def _target_problem(t: Target) -> Optional[str]:
    if t.kind == "http":
        return "http is a source only"
    if t.kind in DATABASE_KINDS and not t.table:
        return f"a {t.kind} target needs a table"
    if t.kind == "file" and not (t.path and t.format):
        return "a file target needs a path with a known extension or a format"
    if t.kind == "kafka" and not t.topic:
        return "a kafka target needs a topic"
    if t.load_mode == "merge" and not t.keys:
        return "load_mode merge requires keys"
    if t.load_mode == "merge" and t.kind not in DATABASE_KINDS:
        return "load_mode merge needs a database target"
    return None


class Transform(_Model):
    sql: Optional[str] = Field(default=None, description="DuckDB SQL over a relation named `batch`")
    python: Optional[str] = Field(default=None, description="code defining `transform(batch)`")

    @field_validator("python")
    @classmethod
    def _defines_transform(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            tree = ast.parse(v)
        except SyntaxError as exc:
            raise ValueError(f"transform.python does not parse: {exc.msg} (line {exc.lineno})") from exc
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if "transform" not in names:
            raise ValueError("transform.python must define a top-level function transform(batch)")
        return v

    @field_validator("sql")
    @classmethod
    def _sql_not_blank(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.strip():
            raise ValueError("transform.sql must not be blank")
        return v


_RELATIVE_RE = re.compile(r"^\s*(\d+)\s+(minute|hour|day|week|month|year)s?\s*$")


class Filter(_Model):
    """One row predicate; all filters are AND-ed. Pushed down to the source when it is a database.

    ``between`` is inclusive at both ends (``[low, high]``, e.g. two ISO dates); ``within_last`` keeps rows
    whose ``column`` (a time) is at most ``value`` ago, written ``"<n> <unit>"`` (minute/hour/day/week/
    month/year), evaluated when the run reads; ``contains`` is a case-sensitive substring match.
    ``column`` may be ``alias.column`` to name a column of a joined table.
    """

    column: str
    op: Literal["=", "!=", ">", ">=", "<", "<=", "is_null", "not_null", "in", "not_in", "between",
                "within_last", "contains"]
    value: Union[str, int, float, bool, list[Union[str, int, float]], None] = None

    @field_validator("column")
    @classmethod
    def _column_name(cls, v: str) -> str:
        return _check_column_ref(v)

    @model_validator(mode="after")
    def _value_matches_op(self) -> "Filter":
        if self.op in ("is_null", "not_null"):
            if self.value is not None:
                raise ValueError(f"op {self.op} takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op} needs a non-empty list")
        elif self.op == "between":
            if not isinstance(self.value, list) or len(self.value) != 2:
                raise ValueError("op between needs a list [low, high]")
        elif self.op == "within_last":
            if not isinstance(self.value, str) or not _RELATIVE_RE.match(self.value):
                raise ValueError("op within_last needs a value like '7 days' (minute/hour/day/week/month/year)")
        elif self.op == "contains":
            if not isinstance(self.value, str) or not self.value:
                raise ValueError("op contains needs a non-empty text value")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs a scalar value")
        return self


def _check_column(v: str) -> str:
    if not _COLUMN_RE.match(v):
        raise ValueError(f"not a column name: {v!r}")
    return v


def _check_column_ref(v: str) -> str:
    """A column of the source (``col``) or of a joined table (``alias.col``)."""
    if not _COLUMN_REF_RE.match(v):
        raise ValueError(f"not a column name (or alias.column): {v!r}")
    return v


class Join(_Model):
    """Another table of the source's connection, joined on keys; its columns are read as ``alias.column``.

    ``on`` names the key columns of the source; ``right_on`` those of the joined table when they are named
    differently (same length, in order). ``columns`` are the joined table's columns to add to each row
    (empty: all of them but the keys); a name the source also has comes out as ``<alias>_<column>``.
    """

    table: str
    alias: Optional[str] = Field(default=None, description="defaults to the table's name without schema")
    kind: Literal["inner", "left"] = "inner"
    on: list[str] = Field(min_length=1)
    right_on: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys_and_names(self) -> "Join":
        _check_table(self.table)
        for name in [*self.on, *self.right_on, *self.columns]:
            _check_column(name)
        if self.alias is not None:
            _check_column(self.alias)
        if self.right_on and len(self.right_on) != len(self.on):
            raise ValueError("right_on must name as many columns as on")
        return self

    @property
    def name(self) -> str:
        return self.alias or self.table.rsplit(".", 1)[-1]


class OrderBy(_Model):
    """Sort key of the output (a source column, or an aggregate's output column/alias)."""

    column: str
    descending: bool = False

    @field_validator("column")
    @classmethod
    def _column_name(cls, v: str) -> str:
        return _check_column_ref(v)


class Measure(_Model):
    fn: Literal["sum", "count", "avg", "min", "max"]
    column: Optional[str] = Field(default=None, description="None only for count(*)")
    alias: str

    @model_validator(mode="after")
    def _column_needed(self) -> "Measure":
        if self.fn != "count" and not self.column:
            raise ValueError(f"{self.fn} needs a column")
        for name in (self.column, self.alias):
            if name is not None:
                _check_column(name)
        return self


class Aggregate(_Model):
    """Group rows per time period (of ``time_column``) and/or dimensions, computing measures."""

    period: Optional[Literal["hour", "day", "week", "month"]] = None
    time_column: Optional[str] = None
    dimensions: list[str] = Field(default_factory=list)
    measures: list[Measure] = Field(min_length=1)

    @model_validator(mode="after")
    def _period_needs_time(self) -> "Aggregate":
        if self.period and not self.time_column:
            raise ValueError("an aggregate per period needs a time_column")
        if not self.period and not self.dimensions:
            raise ValueError("an aggregate needs a period or dimensions")
        for name in [self.time_column, *self.dimensions]:
            if name is not None:
                _check_column(name)
        return self

    def output_columns(self) -> list[str]:
        cols = [self.period] if self.period else []
        return cols + list(self.dimensions) + [m.alias for m in self.measures]


class Cleaning(_Model):
    """A row-wise cleaning step; ``dedupe`` keeps one row per ``column`` (``"*"``: per whole row)."""

    op: Literal["lowercase", "uppercase", "trim", "fill_empty", "dedupe"]
    column: str
    value: Optional[str] = Field(default=None, description="the fill value for fill_empty")

    @model_validator(mode="after")
    def _fill_has_value(self) -> "Cleaning":
        if not (self.op == "dedupe" and self.column == "*"):  # "*": drop rows duplicated in every column
            _check_column(self.column)
        if (self.op == "fill_empty") != (self.value is not None):
            raise ValueError("fill_empty needs a value and the other ops take none")
        return self


class Incremental(_Model):
    cursor_column: str
    initial_value: Optional[Union[str, int, float]] = Field(
        default=None, description="None: the first run reads everything")

    @field_validator("cursor_column")
    @classmethod
    def _column_name(cls, v: str) -> str:
        return _check_column(v)


class Schedule(_Model):
    cron: Optional[str] = None
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        from croniter import croniter  # local: keeps importing the spec cheap

        v = " ".join(v.split())
        if len(v.split()) != 5 or not croniter.is_valid(v):
            raise ValueError(f"not a 5-field cron expression: {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {v!r}") from exc
        return v


class Trigger(_Model):
    kind: Literal["manual", "cron", "webhook", "kafka"] = "manual"
    topic: Optional[str] = Field(default=None, description="topic whose messages trigger a run (kind kafka)")
    filter: Optional[str] = Field(default=None, description="only messages matching this expression trigger")

    @model_validator(mode="after")
    def _kafka_needs_topic(self) -> "Trigger":
        if self.kind == "kafka" and not self.topic:
            raise ValueError("a kafka trigger needs a topic")
        if self.kind != "kafka" and (self.topic or self.filter):
            raise ValueError("topic and filter only apply to kafka triggers")
        return self


class Streaming(_Model):
    enabled: bool = False
    max_batch_rows: int = Field(default=1000, gt=0)
    max_batch_seconds: float = Field(default=5.0, gt=0)


class QualityCheck(_Model):
    kind: Literal["not_null", "unique", "row_count_min", "no_email", "no_phone", "accepted_values",
                  "min_value", "max_value"]
    column: Optional[str] = Field(default=None, description="None for table-wide checks")
    value: Optional[Union[int, float]] = None
    values: Optional[list[Union[str, int, float]]] = None

    @model_validator(mode="after")
    def _arguments_match_kind(self) -> "QualityCheck":
        needs_column = self.kind in ("not_null", "unique", "accepted_values", "min_value", "max_value")
        if needs_column and not self.column:
            raise ValueError(f"check {self.kind} needs a column")
        if self.kind in ("row_count_min", "min_value", "max_value") and self.value is None:
            raise ValueError(f"check {self.kind} needs a value")
        if self.kind == "accepted_values" and not self.values:
            raise ValueError("check accepted_values needs values")
        if self.column is not None and not _COLUMN_PATTERN_RE.match(self.column):
            raise ValueError(f"not a column or column pattern: {self.column!r}")
        return self


class PiiRule(_Model):
    column: str = Field(description="column name or fnmatch pattern such as '*email*'")
    action: Literal["mask", "hash", "drop"]

    @field_validator("column")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if not _COLUMN_PATTERN_RE.match(v):
            raise ValueError(f"not a column or column pattern: {v!r}")
        return v

    def matches(self, column: str) -> bool:
        return fnmatch.fnmatchcase(column.lower(), self.column.lower())


class PipelineSpec(_Model):
    """What a pipeline does, applied in this order to each row set:

    source (+ ``joins``) -> ``filters`` -> ``cleaning`` -> ``aggregate`` or ``select`` -> ``order_by`` /
    ``limit`` (top-N) -> ``rename`` -> ``pii`` -> ``transform`` -> target.
    ``select`` lists the columns to keep (empty: all; ``alias.column`` for a joined table's column);
    ``order_by``/``limit`` name columns as they are before ``rename``; ``rename`` maps an output column to
    its name in the target.
    """

    spec_version: Literal["1"] = SPEC_VERSION
    name: Optional[str] = Field(default=None, description="short slug for humans")
    source: Source
    target: Target
    joins: list[Join] = Field(default_factory=list)
    filters: list[Filter] = Field(default_factory=list)
    select: list[str] = Field(default_factory=list, description="columns to keep (empty: all)")
    aggregate: Optional[Aggregate] = None
    order_by: list[OrderBy] = Field(default_factory=list)
    limit: Optional[int] = Field(default=None, gt=0, description="top-N: at most this many rows (after order_by)")
    rename: dict[str, str] = Field(default_factory=dict, description="output column -> target column name")
    cleaning: list[Cleaning] = Field(default_factory=list)
    transform: Transform = Field(default_factory=Transform)
    incremental: Optional[Incremental] = None
    schedule: Optional[Schedule] = None
    trigger: Trigger = Field(default_factory=Trigger)
    streaming: Streaming = Field(default_factory=Streaming)
    quality_checks: list[QualityCheck] = Field(default_factory=list)
    pii: list[PiiRule] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list, description="human-readable plan")
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "PipelineSpec":
        for check in (_check_trigger, _check_streaming, _check_incremental, _check_not_self_copy,
                      _check_shaping):
            problem = check(self)
            if problem:
                raise ValueError(problem)
        return self


def _check_trigger(s: PipelineSpec) -> Optional[str]:
    has_cron = bool(s.schedule and s.schedule.cron)
    if s.trigger.kind == "cron" and not has_cron:
        return "a cron trigger needs schedule.cron"
    if has_cron and s.trigger.kind != "cron":
        return f"schedule.cron is set but the trigger is {s.trigger.kind}"
    if s.source.path_param and s.trigger.kind not in ("webhook", "manual"):
        return "a file named by a run parameter needs a webhook or manual trigger"
    return None


def _check_streaming(s: PipelineSpec) -> Optional[str]:
    if s.streaming.enabled and s.source.kind != "kafka":
        return "streaming requires a kafka source"
    if s.streaming.enabled and s.aggregate is not None:
        return "streaming pipelines cannot aggregate (each micro-batch would be aggregated alone)"
    return None


def _check_incremental(s: PipelineSpec) -> Optional[str]:
    if s.incremental and s.source.kind not in (*DATABASE_KINDS, "http"):
        return "incremental cursors need a database or http source (kafka keeps offsets, files are read whole)"
    if s.incremental and s.aggregate is not None:
        return "an incremental load cannot aggregate (only the new rows would be summed)"
    return None


def _check_shaping(s: PipelineSpec) -> Optional[str]:
    for name in s.select:
        _check_column_ref(name)
    for old, new in s.rename.items():
        _check_column(old)
        _check_column(new)
    if len(set(s.rename.values())) != len(s.rename):
        raise ValueError("rename maps two columns to one name")
    if s.joins and s.source.kind not in DATABASE_KINDS:
        return "joins need a database source (the joined tables live in the source's connection)"
    if s.select and s.aggregate is not None:
        return "select and aggregate both choose the output columns; use one"
    if (s.limit is not None or s.order_by) and s.streaming.enabled:
        return "a stream has no top-N or order (each micro-batch would be sorted alone)"
    if s.limit is not None and s.incremental is not None:
        return "an incremental load cannot take a top-N (only the new rows would be ranked)"
    return None


def _check_not_self_copy(s: PipelineSpec) -> Optional[str]:
    src, dst = s.source, s.target
    same = (src.kind == dst.kind and src.connection == dst.connection
            and (src.table or src.path or src.topic) == (dst.table or dst.path or dst.topic))
    return "the target must differ from the source" if same else None


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`PipelineSpec` (for prompts, the console and docs)."""
    return PipelineSpec.model_json_schema()


# --- artifacts --------------------------------------------------------------------------------------

def _mm(text: str) -> str:
    """Mermaid label text: a quote would end the label, < and > read as HTML; use entity codes."""
    return text.replace('"', "#34;").replace("<", "#60;").replace(">", "#62;")


def _endpoint_label(e: _Endpoint) -> str:
    where = e.table or e.path or e.topic or getattr(e, "url", None) or getattr(e, "query", None) or ""
    if isinstance(e, Source) and e.path_param:
        where = f"{e.folder + '/' if e.folder else ''}{{{e.path_param}}}"
    conn = f" @{e.connection}" if e.connection else ""
    return _mm(f"{e.kind}{conn}: {where}")


def _transform_labels(spec: PipelineSpec) -> list[str]:
    """One label per step, in the spec's order of application."""
    labels = [f"{j.kind} join {j.table}{' as ' + j.alias if j.alias else ''} on "
              + ", ".join(a if a == b else f"{a} = {b}" for a, b in zip(j.on, j.right_on or j.on)) for j in spec.joins]
    if spec.filters:
        labels.append("filter: " + " AND ".join(_filter_label(f) for f in spec.filters))
    labels += [f"{c.op} {c.column}" for c in spec.cleaning]
    if spec.aggregate:
        a = spec.aggregate
        per = ", ".join(([a.period] if a.period else []) + a.dimensions)
        labels.append("aggregate per " + per + ": " + ", ".join(f"{m.fn}({m.column or '*'})" for m in a.measures))
    if spec.select:
        labels.append("select " + ", ".join(spec.select))
    order = ", ".join(o.column + (" desc" if o.descending else "") for o in spec.order_by)
    if spec.limit is not None:
        labels.append(f"top {spec.limit}" + (f" by {order}" if order else ""))
    elif order:
        labels.append(f"order by {order}")
    if spec.rename:
        labels.append("rename " + ", ".join(f"{old} to {new}" for old, new in spec.rename.items()))
    labels += [f"pii {p.action} {p.column}" for p in spec.pii]
    if spec.transform.sql:
        labels.append("SQL over batch")
    if spec.transform.python:
        labels.append("python transform(batch)")
    return labels


def _filter_label(f: Filter) -> str:
    if f.op in ("is_null", "not_null"):
        return f"{f.column} {'is' if f.op == 'is_null' else 'is not'} null"
    if f.op == "between":
        return f"{f.column} between {f.value[0]} and {f.value[1]}"
    if f.op == "within_last":
        return f"{f.column} within last {f.value}"
    if f.op in ("in", "not_in"):
        return f"{f.column} {f.op.replace('_', ' ')} ({', '.join(str(v) for v in f.value)})"
    return f"{f.column} {f.op} {f.value}"


def render_mermaid(spec: Union[PipelineSpec, dict]) -> str:
    """A left-to-right Mermaid flowchart: trigger, source, each transform step, target, checks."""
    if isinstance(spec, dict):
        spec = PipelineSpec.model_validate(spec)
    lines = ["flowchart LR"]
    lines.append(f'  trigger(["{_mm(_trigger_label(spec))}"])')
    incremental = f" incremental by {spec.incremental.cursor_column}" if spec.incremental else ""
    lines.append(f'  source[("{_endpoint_label(spec.source)}{_mm(incremental)}")]')
    prev = "source"
    lines.append("  trigger -.-> source")
    for i, label in enumerate(_transform_labels(spec), 1):
        lines.append(f'  t{i}["{_mm(label)}"]')
        lines.append(f"  {prev} --> t{i}")
        prev = f"t{i}"
    mode = spec.target.load_mode + (f" on {', '.join(spec.target.keys)}" if spec.target.keys else "")
    lines.append(f'  target[("{_endpoint_label(spec.target)}")]')
    lines.append(f'  {prev} -->|"{_mm(mode)}"| target')
    if spec.quality_checks:
        checks = ", ".join(f"{c.kind}{'(' + c.column + ')' if c.column else ''}" for c in spec.quality_checks)
        lines.append(f'  qa{{{{"{_mm(checks)}"}}}}')
        lines.append("  target -.-> qa")
    return "\n".join(lines) + "\n"


def _trigger_label(spec: PipelineSpec) -> str:
    t = spec.trigger
    if spec.streaming.enabled:
        return (f"stream {t.topic or spec.source.topic}: {spec.streaming.max_batch_rows} rows "
                f"or {spec.streaming.max_batch_seconds:g} s")
    if t.kind == "cron" and spec.schedule:
        return f"cron {spec.schedule.cron} {spec.schedule.timezone}"
    if t.kind == "kafka":
        return f"each message of {t.topic}"
    return t.kind
