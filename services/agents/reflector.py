"""reflector: a failed QA round in, repair instructions out (at most 3 rounds); a passed one, a draft.

A repair round that reproduces the previous round's SQL or findings will not converge: the reflector
escalates once to the SQL compiled from the spec (the SQL expert compiles it without a model); when that is
what failed already, or the compiled SQL fails too, it ends the draft as failed, the findings saying why.

It is also the drafting watchdog: a pipeline waiting in a drafting stage longer than
``agent_stage_timeout_s`` gets ``ExpireStage``, which the aggregate applies only when it is overdue.
"""
from __future__ import annotations

import json

from services.agents import prompts
from services.agents.common import (ESCALATE_TO_COMPILED, AgentReplyError, cause_of, current_spec, reply_output,
                                    usage)
from services.agents.runtime import AgentContext, AgentSpec, derived_id
from services.core.messages import Message, utcnow
from services.domain.pipeline import MAX_REPAIR_ROUNDS, SQL_ARTIFACTS, WAITS_FOR, Pipeline


def quality_score(checks: list[dict], repair_rounds: int, confidence: float = 1.0) -> float:
    """Share of checks passed, less a tenth per repair round it took, scaled by the planner's confidence."""
    if not checks:
        return 0.0
    passed = sum(1 for c in checks if c.get("passed"))
    return round(max(0.0, passed / len(checks) - 0.1 * repair_rounds) * confidence, 3)


def _checks(event: Message) -> list[dict]:
    return json.loads(event.payload.get("checks_json") or "[]")


def repeats_previous_round(current: dict, findings: list) -> bool:
    """The last repair reproduced the round before it: the same SQL, or the same findings."""
    same_sql = current.get("previous_sql") is not None and \
        current["previous_sql"] == [current.get(k) for k in SQL_ARTIFACTS]
    same_findings = current.get("previous_findings") is not None and list(current["previous_findings"]) == findings
    return same_sql or same_findings


def is_compiled(spec: dict, current: dict) -> bool:
    """Whether the draft's SQL is what the spec compiles to (then escalating to it cannot help)."""
    from services.agents.sql_expert import compiled_sql

    columns = json.loads(current.get("source_columns_json") or "[]") or None
    out = compiled_sql(spec, columns)
    if out.get("error"):
        return not any(current.get(k) for k in ("extract_sql", "transform_sql", "target_ddl"))
    return all((out.get(k) or None) == (current.get(k) or None)
               for k in ("extract_sql", "extract_sql_initial", "transform_sql", "target_ddl"))


def build() -> AgentSpec:
    async def complete(ctx: AgentContext, event: Message, pipeline: Pipeline, passed: bool) -> None:
        checks = _checks(event)
        await ctx.propose(event, "CompleteDraft", {
            "revision": pipeline.revision, "quality_score": quality_score(checks, pipeline.repair_round),
            "checks_passed": [c["name"] for c in checks if c.get("passed")], "passed_qa": passed})

    async def on_passed(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        await complete(ctx, event, pipeline, True)

    async def on_failed(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        if pipeline.repair_round >= MAX_REPAIR_ROUNDS:
            await complete(ctx, event, pipeline, False)
            return
        findings = list(event.payload.get("findings") or [])
        cur, spec = pipeline.current, current_spec(pipeline)
        if pipeline.repair_round and ESCALATE_TO_COMPILED in (cur.get("instructions") or []):
            await complete(ctx, event, pipeline, False)  # the spec's own SQL fails: no repair can help
            return
        if pipeline.repair_round and repeats_previous_round(cur, findings):
            if is_compiled(spec, cur):
                await complete(ctx, event, pipeline, False)  # nothing left that could change the outcome
                return
            await ctx.propose(event, "RecordReflection", {
                "revision": pipeline.revision, "round": pipeline.repair_round + 1,
                "instructions": [ESCALATE_TO_COMPILED] + [f"fix: {f}" for f in findings], "llm": None})
            return
        artifacts = {k: cur.get(k) for k in ("extract_sql", "transform_sql", "target_ddl", "python_code")}
        await ctx.ask(event, pipeline, task="reflect", prompt_version=prompts.REFLECT_VERSION,
                      messages=prompts.reflect_messages(spec, findings, artifacts),
                      input={"failures": findings, "artifacts": artifacts, "spec": spec},
                      repair_round=pipeline.repair_round + 1)

    async def on_reply(ctx: AgentContext, reply: Message, pipeline: Pipeline, context: dict) -> None:
        try:
            instructions = [str(i) for i in reply_output(reply).get("instructions") or []]
        except AgentReplyError as exc:
            instructions = [f"(no reflection available: {exc})"]
        findings = list(pipeline.current.get("findings") or [])
        await ctx.propose(cause_of(reply, context), "RecordReflection", {
            "revision": context["revision"], "round": pipeline.repair_round + 1,
            "instructions": instructions or [f"fix: {f}" for f in findings], "llm": usage(reply)})

    async def watchdog(ctx: AgentContext, seen: list[tuple[Pipeline, Message]]) -> None:
        timeout = float(ctx.settings.agent_stage_timeout_s)
        now = utcnow()
        for pipeline, last in seen:
            if pipeline.status not in WAITS_FOR:
                continue
            waited = (now - pipeline.modified_on).total_seconds()
            if waited < timeout:
                continue
            # One proposal per timeout period: a rejected one (a clock a little behind) is not repeated
            # under the same id, which the aggregate would skip as already answered.
            period = str(int(waited // timeout))
            cause = Message(last.name, dict(last.envelope, message_id=derived_id(last.message_id, period)), {})
            await ctx.propose(cause, "ExpireStage", {"revision": pipeline.revision, "stage": pipeline.status,
                                                     "timeout_s": timeout})

    return AgentSpec("reflector", {"QaPassed": on_passed, "QaFailed": on_failed}, on_reply, on_tick=watchdog)
