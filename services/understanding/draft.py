"""What the rules found so far: the pieces of a PipelineSpec plus the questions still open."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Problem:
    missing: str
    question_en: str
    question_ru: str


@dataclass
class Draft:
    russian: bool = False
    source: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    filters: list[dict[str, Any]] = field(default_factory=list)
    aggregate: Optional[dict[str, Any]] = None
    cleaning: list[dict[str, Any]] = field(default_factory=list)
    pii: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    incremental: Optional[dict[str, Any]] = None
    crons: list[tuple[str, str]] = field(default_factory=list)  # (cron, the phrase it came from)
    timezone: Optional[str] = None
    trigger: dict[str, Any] = field(default_factory=lambda: {"kind": "manual"})
    streaming: Optional[dict[str, Any]] = None
    load_mode: Optional[str] = None
    keys: list[str] = field(default_factory=list)
    sync: bool = False
    # Output shaping (spec.joins, select, order_by, limit, rename); see ``shaping()``.
    joins: list[dict[str, Any]] = field(default_factory=list)
    select: list[str] = field(default_factory=list)
    order_by: list[dict[str, Any]] = field(default_factory=list)
    limit: Optional[int] = None
    rename: dict[str, str] = field(default_factory=dict)
    # Phrases naming what is moved ("order lines", «платежи»), for linking to the catalog's tables.
    subject: list[str] = field(default_factory=list)
    # Counted nouns that are not rows ("count of no-shows"): (start, end, word); asked about unless the
    # catalog names them as a category value (grounding.link_values).
    counted: list[tuple[int, int, str]] = field(default_factory=list)
    # Mentions (services.understanding.endpoints.Mention) a grammar rule found itself, e.g. the sides of
    # "keep <target> in sync with <source>"; resolved together with the ones the endpoint scan finds.
    mentions: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    defaults_used: int = 0
    problems: list[Problem] = field(default_factory=list)

    def ask(self, missing: str, question_en: str, question_ru: str) -> None:
        if all(p.missing != missing for p in self.problems):
            self.problems.append(Problem(missing, question_en, question_ru))

    def default(self, note: str) -> None:
        """Record a documented default the compiler applied (lowers confidence, shown in notes)."""
        self.notes.append(note)
        self.defaults_used += 1

    def add_check(self, check: dict[str, Any]) -> None:
        if check not in self.checks:
            self.checks.append(check)

    def shaping(self) -> dict[str, Any]:
        """The spec's shaping fields, once the source is known (a joined table named by a bare noun
        lives in the source's schema: "orders joined with customers" from shop.orders -> shop.customers)."""
        schema = str(self.source.get("table") or "").rpartition(".")[0]
        joins = []
        for join in self.joins:
            join = dict(join)
            if "." not in join["table"] and schema:
                join["table"] = f"{schema}.{join['table']}"
                self.default(f"joined table {join['table']}: a table of the source's schema")
            joins.append(join)
        return {"joins": joins, "select": self.select, "order_by": self.order_by, "limit": self.limit,
                "rename": self.rename}
