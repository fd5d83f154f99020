"""schema-analyst: real source and target schemas, the type mapping between them, PII tags on a sample."""
from __future__ import annotations

import asyncio
import json
import re

import sqlglot
from sqlglot import exp

from services.agents.common import current_spec, needs_python
from services.agents.qa.spec_checks import date_range_findings, normalise_dialect, spec_dialects
from services.agents.runtime import AgentContext, AgentSpec
from services.core.messages import Message
from services.domain.pipeline import Pipeline

PII_PATTERNS = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    "phone": re.compile(r"^\+?\d[\d\s()-]{9,}$"),
    "card": re.compile(r"^\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}$"),
}
WARNING = "warning: "  # issues with this prefix are reported but do not fail QA
SAMPLE_IN_EVENT = 5  # rows; masked, so the event log never holds personal data


def ddl_columns(ddl: str | None, dialect: str) -> list[list[str]]:
    """Column names and types declared by a CREATE TABLE (``dialect`` in any spelling: "ClickHouse", "pg")."""
    dialect = normalise_dialect(dialect)
    if not ddl or not dialect:
        return []
    try:
        tree = sqlglot.parse_one(ddl, read=dialect)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return []  # QA reports the parse error itself
    if tree is None:
        return []
    return [[c.name, c.args["kind"].sql(dialect=dialect) if c.args.get("kind") else ""]
            for c in tree.find_all(exp.ColumnDef)]


def detect_pii(rows: list[dict]) -> list[dict]:
    """Columns whose sampled values look like personal data, with the kind found."""
    found: dict[str, str] = {}
    for row in rows:
        for col, value in row.items():
            if col in found or not isinstance(value, str):
                continue
            for kind, pattern in PII_PATTERNS.items():
                if pattern.search(value) if kind == "email" else pattern.match(value):
                    found[col] = kind
                    break
    return [{"column": c, "kind": k} for c, k in sorted(found.items())]


def mask_row(row: dict, pii_columns: set[str]) -> dict:
    return {k: ("***" if k in pii_columns and v is not None else v) for k, v in row.items()}


def build(sources) -> AgentSpec:
    async def on_ready(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        spec = current_spec(pipeline)
        if event.short_name == "SqlProposed" and needs_python(spec):
            return  # the python coder goes first; TransformProposed will bring us back
        cur = pipeline.current
        issues: list[str] = []
        # A topic that does not exist yet is normal for a streaming source: its producer creates it.
        severity = WARNING if (spec.get("source") or {}).get("kind") == "kafka" else ""
        try:
            source_cols = await asyncio.to_thread(sources.columns, pipeline.tenant_id, spec)
        except Exception as exc:  # a missing table or an unreachable server is a finding, not a crash
            source_cols, issues = [], issues + [f"{severity}source schema: {exc}"]
        try:
            rows = await asyncio.to_thread(sources.sample, pipeline.tenant_id, spec, cur, 50)
        except Exception as exc:
            rows, issues = [], issues + [f"{severity}source sample: {exc}"]
        pii = detect_pii(rows)
        declared = {p.get("column"): p.get("action") for p in spec.get("pii") or []}
        for item in pii:
            item["action"] = declared.get(item["column"]) or ("mask" if declared else "tag")
        masked = [mask_row(r, {p["column"] for p in pii}) for r in rows[:SAMPLE_IN_EVENT]]
        # The spec's target engine, not the dialect an answer claimed, reads the DDL.
        target_cols = ddl_columns(cur.get("target_ddl"), spec_dialects(spec)[1])
        # The source's real min/max of its dates against what the target's date types hold (not a sample's).
        ranges = await asyncio.to_thread(sources.value_ranges, pipeline.tenant_id, spec) if target_cols else {}
        issues += [f.message for f in date_range_findings(spec, target_cols, ranges)]
        await ctx.propose(event, "RecordSchemaCheck", {
            "revision": pipeline.revision,
            "source_columns_json": json.dumps(source_cols or []),
            "target_columns_json": json.dumps(target_cols),
            "pii_json": json.dumps(pii), "issues": issues,
            "sample_rows_json": json.dumps(masked, default=str, ensure_ascii=False)})

    return AgentSpec("schema-analyst", {"SqlProposed": on_ready, "TransformProposed": on_ready})
