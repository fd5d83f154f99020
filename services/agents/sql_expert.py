"""sql-expert: a plan (or repair instructions) in, extraction/transform SQL and target DDL out.

Dialects are the spec's engines, whatever the answer says. When the reflector escalates a repair that does
not converge, the SQL is compiled from the spec here (services.spec_compiler), without asking any model.
"""
from __future__ import annotations

import asyncio
from typing import Callable, Optional

from services.agents import prompts
from services.agents.common import (ESCALATE_TO_COMPILED, AgentReplyError, cause_of, current_spec, join_columns,
                                    reply_output, usage)
from services.agents.qa.spec_checks import spec_dialects
from services.agents.runtime import AgentContext, AgentSpec
from services.core.messages import Message
from services.domain.pipeline import Pipeline

ColumnsLookup = Callable[[str, dict], Optional[list]]


def _pairs(columns: Optional[list]) -> Optional[list[tuple[str, str]]]:
    return [(str(c[0]), str(c[1])) for c in columns] if columns else None


def compiled_sql(spec: dict, columns: Optional[list], joined: Optional[dict] = None,
                 ranges: Optional[dict] = None) -> dict:
    """The SQL the spec compiles to, or no SQL and the compiler's reason (e.g. a column the source lacks)."""
    from services.spec_compiler import generate_sql

    try:
        return generate_sql(spec, _pairs(columns), {t: _pairs(c) for t, c in (joined or {}).items()} or None,
                            ranges or None)
    except Exception as exc:  # the compiler validates the spec against the columns; its reason is the finding
        return {"error": f"no SQL could be generated: the spec does not compile: {type(exc).__name__}: {exc}"}


def _text(value) -> Optional[str]:
    # A model may answer a statement as a list or an object; QA then reports it as unparsable SQL.
    return None if value is None or value == "" else value if isinstance(value, str) else str(value)


def sql_proposal(spec: dict, out: dict, revision: int, llm: Optional[dict]) -> dict:
    source_dialect, target_dialect = spec_dialects(spec)
    return {
        "revision": revision, "extract_sql": _text(out.get("extract_sql")),
        "transform_sql": _text(out.get("transform_sql")), "target_ddl": _text(out.get("target_ddl")),
        "source_dialect": source_dialect, "target_dialect": target_dialect,
        "extract_sql_initial": _text(out.get("extract_sql_initial")),
        "target_setup_sql": [str(s) for s in out.get("target_setup_sql") or []],
        "notes": [str(n) for n in out.get("notes") or []] + ([out["error"]] if out.get("error") else []),
        "llm": llm}


def build(source_columns: Optional[ColumnsLookup] = None, source_ranges: Optional[Callable] = None) -> AgentSpec:
    async def on_plan(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        spec = current_spec(pipeline)
        columns = await asyncio.to_thread(source_columns, pipeline.tenant_id, spec) if source_columns else None
        # Real min/max of date columns: the target type must hold them (ClickHouse 18.16 dates start in 1970).
        ranges = await asyncio.to_thread(source_ranges, pipeline.tenant_id, spec) if source_ranges else {}
        joined = await asyncio.to_thread(join_columns, source_columns, pipeline.tenant_id, spec)
        instructions = list(pipeline.current.get("instructions") or []) if pipeline.repair_round else []
        if ESCALATE_TO_COMPILED in instructions:
            out = await asyncio.to_thread(compiled_sql, spec, columns, joined, ranges)
            out["notes"] = list(out.get("notes") or []) + ["compiled from the spec: the repair did not converge"]
            await ctx.propose(event, "RecordSql", sql_proposal(spec, out, pipeline.revision, None))
            return
        await ctx.ask(event, pipeline, task="sql", prompt_version=prompts.SQL_VERSION,
                      messages=prompts.sql_messages(spec, columns, instructions),
                      input={"spec": spec, "source_columns": columns, "instructions": instructions,
                             "join_columns": joined, "source_ranges": ranges},
                      complexity="high" if spec.get("transform") else "medium",
                      repair_round=pipeline.repair_round)

    async def on_reply(ctx: AgentContext, reply: Message, pipeline: Pipeline, context: dict) -> None:
        try:
            out = reply_output(reply)
        except AgentReplyError as exc:
            out = {"extract_sql": None, "transform_sql": None, "target_ddl": None,
                   "error": f"no SQL could be generated: {exc}"}
        spec = current_spec(pipeline)
        await ctx.propose(cause_of(reply, context), "RecordSql",
                          sql_proposal(spec, out, context["revision"], usage(reply)))

    return AgentSpec("sql-expert", {"PlanProposed": on_plan, "ReflectionIssued": on_plan}, on_reply)
