"""The row set a spec reads: the source's columns plus those of its joined tables, and how words resolve.

A spec names columns three ways: ``col`` (a source column, or a joined column by its output name or, when
only one joined table has it, its bare name), ``alias.col`` (a joined table's column) and ``<source
table>.col``. :class:`Scope` resolves each to a :class:`Field`: where the value lives (table alias and
column) and the name it carries in the row after the joins.

Output names of joined columns follow ``Join``'s rule: the column's own name, or ``<alias>_<column>`` when
the source (or an earlier join) already has that name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from services.domain.spec import DATABASE_KINDS, Join, PipelineSpec

from .typemap import Canon, canonical, with_range

ColumnList = Optional[list[tuple[str, str]]]
JoinColumns = Optional[dict[str, ColumnList]]
ValueRanges = Optional[dict[str, tuple]]  # source column -> its real (min, max), for dates and timestamps


class SqlGenerationError(ValueError):
    """The spec cannot be turned into SQL (e.g. it names a column the source does not have)."""


@dataclass(frozen=True)
class Field:
    """One column of the row after the joins."""

    name: str                 # its name in that row (and in the output, unless renamed)
    column: str               # its name in its own table
    table: Optional[str]      # the join alias it comes from; None for the source
    type: Optional[Canon]     # None when the table's columns are unknown


class _Table:
    def __init__(self, columns: ColumnList, dialect: str, ranges: ValueRanges = None):
        # An empty list (an empty topic, a file not there yet) tells nothing: treat it as unknown.
        self.known = bool(columns)
        self.types: dict[str, Canon] = {n: with_range(canonical(t, dialect), (ranges or {}).get(n))
                                        for n, t in (columns or [])}

    def find(self, word: str) -> Optional[str]:
        """The column ``word`` names (exact, then case-insensitively, then singular / ``_id`` variants)."""
        if word in self.types:
            return word
        lower = {n.lower(): n for n in self.types}
        for candidate in _variants(word.lower()):
            if candidate in lower:
                return lower[candidate]
        return None


def _variants(word: str) -> list[str]:
    out = [word]
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("s"):
        out.append(word[:-1])
    return out + [f"{v}_id" for v in list(out)]


class Scope:
    """The source's columns (when known), the joined tables' columns and the names in the joined row."""

    def __init__(self, spec: PipelineSpec, source_columns: ColumnList = None, join_columns: JoinColumns = None,
                 value_ranges: ValueRanges = None):
        kind = spec.source.kind
        self.dialect = kind if kind in DATABASE_KINDS else "arrow"
        self.main = _Table(source_columns, self.dialect, value_ranges)
        self.joins: list[Join] = list(spec.joins)
        self.join_tables = {j.name: _Table(_lookup(join_columns, j), self.dialect) for j in self.joins}
        main_name = (spec.source.table or "q").rsplit(".", 1)[-1]  # a query source is the subquery q
        taken = {j.name for j in self.joins}
        if len(taken) != len(self.joins):
            raise SqlGenerationError("two joins have the same alias; give each its own")
        # The source's alias in SQL: its table's bare name, unless a join already calls itself that.
        self.alias = main_name if main_name not in taken else next(
            a for a in ("src", "src0", "src1", "src2") if a not in taken)
        self.main_names = {main_name, self.alias}
        self._added = self._added_fields()

    @property
    def known(self) -> bool:
        """Whether every column of the joined row is known (names and types)."""
        return self.main.known and self._complete

    # -- the row after the joins ---------------------------------------------------------------------

    def fields(self) -> Optional[list[Field]]:
        """Every column of the joined row in order (source first, then each join's added columns)."""
        if not self.known:
            return None
        return [Field(n, n, None, t) for n, t in self.main.types.items()] + self._added

    def added(self, join: Join) -> Optional[list[Field]]:
        """The columns ``join`` adds to each row; None when they are unknown."""
        if not join.columns and not self.join_tables[join.name].known:
            return None
        return [f for f in self._added if f.table == join.name]

    def _added_fields(self) -> list[Field]:
        out, taken = [], set(self.main.types)
        self._complete = True
        for j in self.joins:
            table = self.join_tables[j.name]
            keys = set(j.right_on or j.on)
            if j.columns:
                names = [table.find(c) or c for c in j.columns] if table.known else list(j.columns)
            elif table.known:
                names = [c for c in table.types if c not in keys]
            else:
                self._complete, names = False, []
            for col in names:
                if table.known and col not in table.types:
                    raise SqlGenerationError(f"column {col!r} is not among the columns of {j.table} "
                                             f"{sorted(table.types)}")
                name = col if col not in taken else f"{j.name}_{col}"
                taken.add(name)
                out.append(Field(name, col, j.name, table.types.get(col)))
        return out

    # -- resolving the words of a spec ---------------------------------------------------------------

    def resolve(self, ref: str) -> Field:
        """The field ``ref`` (``col``, ``alias.col`` or ``<source table>.col``) names."""
        if "." in ref:
            alias, col = ref.split(".", 1)
            if alias in self.join_tables:
                return self._joined(alias, col)
            if alias in self.main_names:
                return self._main(col)
            raise SqlGenerationError(f"{ref!r} names no joined table; the joins are {sorted(self.join_tables)}")
        if not self.joins or ref in self.main.types:
            return self._main(ref)
        by_name = next((f for f in self._added if f.name == ref), None)
        if by_name:
            return by_name
        if not self.main.known or self.main.find(ref):
            return self._main(ref)
        owners = [a for a, t in self.join_tables.items() if t.known and t.find(ref)]
        if len(owners) == 1:
            return self._joined(owners[0], ref)
        return self._main(ref)  # raises, naming the source's columns

    def _main(self, col: str) -> Field:
        if not self.main.known:
            return Field(col, col, None, None)
        found = self.main.find(col)
        if found is None:
            raise SqlGenerationError(f"column {col!r} is not among the source columns {sorted(self.main.types)}")
        return Field(found, found, None, self.main.types[found])

    def _joined(self, alias: str, col: str) -> Field:
        table = self.join_tables[alias]
        found = table.find(col) if table.known else col
        if found is None:
            join = next(j for j in self.joins if j.name == alias)
            raise SqlGenerationError(f"column {col!r} is not among the columns of {join.table} {sorted(table.types)}")
        for f in self._added:
            if f.table == alias and f.column == found:
                return f
        # A joined column the join does not add (a key, or one left out of Join.columns): named like one.
        clash = found in self.main.types or any(f.name == found for f in self._added)
        return Field(f"{alias}_{found}" if clash else found, found, alias, table.types.get(found))


def _lookup(join_columns: JoinColumns, join: Join) -> ColumnList:
    if not join_columns:
        return None
    for key in (join.table, join.name, join.table.rsplit(".", 1)[-1]):
        if join_columns.get(key):
            return [(str(n), str(t)) for n, t in join_columns[key]]
    return None
