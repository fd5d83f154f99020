"""What a spec's output looks like: its columns and types (``output_shape``) and its grain (``grain``).

Both are pure functions of the spec (and the source columns): the SQL compiler builds the target DDL from
the same shape, and QA checks a draft's SQL output and a dry run's result against them. The shape follows
the spec's order of application: the joined row -> ``aggregate`` or ``select`` -> ``rename`` -> ``pii``
(masked columns become text, dropped ones go). Row-wise steps (filters, cleaning, order, limit) keep it. A
hand-written ``transform`` (SQL or Python) is not accounted for: it is checked by its dry run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from services.domain.spec import DATABASE_KINDS, Measure, PipelineSpec

from .scope import ColumnList, Field, JoinColumns, Scope, SqlGenerationError
from .typemap import Canon


@dataclass(frozen=True)
class OutCol:
    """One column of the output as ``aggregate``/``select`` shape it (before ``rename``)."""

    name: str                        # its name (an aggregate alias equal to a source column gets ``_agg``)
    type: Optional[Canon]            # None when the source columns are unknown
    field: Optional[Field] = None    # the joined row's column it is, or that its period/measure reads
    period: Optional[str] = None     # an aggregate's period over ``field``
    measure: Optional[Measure] = None
    spec_name: str = ""              # how the spec calls it (``alias.col``, the alias before ``_agg``)


def shaped_columns(spec: PipelineSpec, scope: Scope) -> Optional[list[OutCol]]:
    """The columns after ``aggregate`` or ``select``; None when they depend on columns nobody gave."""
    if spec.aggregate:
        return _aggregate_columns(spec, scope)
    if spec.select:
        out = []
        for ref in spec.select:
            f = scope.resolve(ref)
            out.append(OutCol(f.name, f.type, f, spec_name=ref))
        _check_unique([c.name for c in out], "select")
        return out
    fields = scope.fields()
    return None if fields is None else [OutCol(f.name, f.type, f, spec_name=f.name) for f in fields]


def _aggregate_columns(spec: PipelineSpec, scope: Scope) -> list[OutCol]:
    a = spec.aggregate
    out = []
    if a.period:
        f = scope.resolve(a.time_column)
        kind = "timestamp" if a.period == "hour" else "date"
        out.append(OutCol(free_alias(a.period, scope), Canon(kind), f, period=a.period, spec_name=a.period))
    for dim in a.dimensions:
        f = scope.resolve(dim)
        out.append(OutCol(f.name, f.type, f, spec_name=dim))
    for m in a.measures:
        f = scope.resolve(m.column) if m.column else None
        known = scope.main.known and (f is None or f.type is not None)
        out.append(OutCol(free_alias(m.alias, scope), measure_type(m.fn, f.type if f else None) if known else None,
                          f, measure=m, spec_name=m.alias))
    _check_unique([c.name for c in out], "aggregate")
    return out


def free_alias(alias: str, scope: Scope) -> str:
    # An alias equal to a source column breaks ClickHouse (aliases are visible in WHERE: "aggregate
    # function found in WHERE"), so it is renamed when the columns are known; every dialect does the same
    # so that a spec has one output whatever its engines.
    names = set(scope.main.types) | {f.name for f in scope.fields() or []}
    return f"{alias}_agg" if alias in names else alias


def measure_type(fn: str, src: Optional[Canon]) -> Canon:
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


def _check_unique(names: list[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SqlGenerationError(f"{what} gives two output columns the name(s) {dupes}; rename one")


def find_column(columns: list[OutCol], word: str) -> Optional[OutCol]:
    """The output column the spec calls ``word`` (its name, or how the spec wrote it)."""
    return next((c for c in columns if word in (c.name, c.spec_name)), None)


def renames(spec: PipelineSpec, columns: Optional[list[OutCol]]) -> dict[str, str]:
    """``rename`` as {output column as named before rename: target name}, checked against the columns."""
    if columns is None:
        return dict(spec.rename)
    out = {}
    for old, new in spec.rename.items():
        col = find_column(columns, old)
        if col is None:
            raise SqlGenerationError(f"rename names {old!r}, which is not an output column "
                                     f"{[c.name for c in columns]}")
        out[col.name] = new
    final = [out.get(c.name, c.name) for c in columns]
    _check_unique(final, "rename")
    return out


def pii_effect(spec: PipelineSpec, names: list[str]) -> tuple[set[str], set[str]]:
    """(dropped, masked) among ``names`` (the output after rename) by the spec's PII rules."""
    dropped = {n for r in spec.pii if r.action == "drop" for n in names if r.matches(n)}
    masked = {n for r in spec.pii if r.action != "drop" for n in names if r.matches(n)} - dropped
    return dropped, masked


def shape_of(spec: PipelineSpec, scope: Scope) -> Optional[list[tuple[str, Canon]]]:
    """The output (name, canonical type) pairs; None when some name or type is unknown."""
    columns = shaped_columns(spec, scope)
    if columns is None or any(c.type is None for c in columns):
        return None
    mapping = renames(spec, columns)
    named = [(mapping.get(c.name, c.name), c.type) for c in columns]
    dropped, masked = pii_effect(spec, [n for n, _ in named])
    return [(n, Canon("string") if n in masked else t) for n, t in named if n not in dropped]


def output_shape(spec: Union[PipelineSpec, dict], source_columns: ColumnList = None,
                 join_columns: JoinColumns = None) -> Optional[list[tuple[str, Canon]]]:
    """The columns one output row has, in order, as (name, canonical type) — what the target DDL declares.

    ``source_columns`` are the source's (name, type) pairs as it spells types; ``join_columns`` maps each
    joined table (as the spec names it) to its pairs. None when a needed column list is missing. Raises
    :class:`SqlGenerationError` when the spec names a column the given columns do not have.
    """
    model = spec if isinstance(spec, PipelineSpec) else PipelineSpec.model_validate(spec)
    return shape_of(model, Scope(model, source_columns, join_columns))


def grain(spec: Union[PipelineSpec, dict], source_columns: ColumnList = None) -> Optional[list[str]]:
    """The output columns whose values one output row stands for, as the target names them.

    An aggregate: its period column and dimensions (``[]`` never: an aggregate needs one of them); else a
    ``dedupe`` key (``["*"]`` for a whole-row dedupe); else None (one output row per source row). The
    source columns only matter when an aggregate alias collides with one of them (it then ends in ``_agg``).
    """
    model = spec if isinstance(spec, PipelineSpec) else PipelineSpec.model_validate(spec)
    scope = Scope(model, source_columns)
    if model.aggregate:
        a = model.aggregate
        keys = ([free_alias(a.period, scope)] if a.period else []) + [scope.resolve(d).name for d in a.dimensions]
    else:
        dedupe = [c.column for c in model.cleaning if c.op == "dedupe"]
        if not dedupe:
            return None
        if dedupe[0] == "*":
            return ["*"]
        keys = [scope.resolve(dedupe[0]).name]
    return [model.rename.get(k, k) for k in keys]


def needs_whole_input(spec: Union[PipelineSpec, dict]) -> bool:
    """Whether the transform is only right when it sees the whole input at once.

    A database source aggregates, orders and takes its top-N in the extract SQL, where every row is seen.
    A file, topic or HTTP source is aggregated / ordered / cut to N in the DuckDB transform, which the
    executor applies batch by batch: with more rows than one batch, each batch would yield its own groups,
    order and top N. Such a run must hand the transform its whole input as one batch.
    """
    model = spec if isinstance(spec, PipelineSpec) else PipelineSpec.model_validate(spec)
    if model.source.kind in DATABASE_KINDS:
        return False
    return bool(model.aggregate or model.order_by or model.limit is not None)
