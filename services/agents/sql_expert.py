"""sql-expert: a plan (or repair instructions) in, extraction/transform SQL and target DDL out."""
from __future__ import annotations

import asyncio
from typing import Callable, Optional

from services.agents import prompts
from services.agents.common import AgentReplyError, cause_of, current_spec, reply_output, usage
from services.agents.runtime import AgentContext, AgentSpec
from services.core.messages import Message
from services.domain.pipeline import Pipeline

ColumnsLookup = Callable[[str, dict], Optional[list]]


def build(source_columns: Optional[ColumnsLookup] = None) -> AgentSpec:
    async def on_plan(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        spec = current_spec(pipeline)
        columns = await asyncio.to_thread(source_columns, pipeline.tenant_id, spec) if source_columns else None
        instructions = list(pipeline.current.get("instructions") or []) if pipeline.repair_round else []
        await ctx.ask(event, pipeline, task="sql", prompt_version=prompts.SQL_VERSION,
                      messages=prompts.sql_messages(spec, columns, instructions),
                      input={"spec": spec, "source_columns": columns, "instructions": instructions,
                             # each joined table's columns, looked up like the source's (same connection)
                             "join_columns": {j["table"]: await asyncio.to_thread(
                                 source_columns, pipeline.tenant_id,
                                 {**spec, "source": {**spec["source"], "table": j["table"], "query": None}})
                                 for j in spec.get("joins") or []} if source_columns else {}},
                      complexity="high" if spec.get("transform") else "medium",
                      repair_round=pipeline.repair_round)

    async def on_reply(ctx: AgentContext, reply: Message, pipeline: Pipeline, context: dict) -> None:
        try:
            out = reply_output(reply)
        except AgentReplyError as exc:
            out = {"extract_sql": None, "transform_sql": None, "target_ddl": None,
                   "error": f"no SQL could be generated: {exc}"}
        dialects = out.get("dialects") or {}
        await ctx.propose(cause_of(reply, context), "RecordSql", {
            "revision": context["revision"], "extract_sql": out.get("extract_sql"),
            "transform_sql": out.get("transform_sql"), "target_ddl": out.get("target_ddl"),
            "source_dialect": str(dialects.get("extract") or ""),
            "target_dialect": str(dialects.get("target") or ""),
            "extract_sql_initial": out.get("extract_sql_initial"),
            "target_setup_sql": list(out.get("target_setup_sql") or []),
            "notes": [str(n) for n in out.get("notes") or []] + ([out["error"]] if out.get("error") else []),
            "llm": usage(reply)})

    return AgentSpec("sql-expert", {"PlanProposed": on_plan, "ReflectionIssued": on_plan}, on_reply)
