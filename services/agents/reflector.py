"""reflector: a failed QA round in, repair instructions out (at most 3 rounds); a passed one, a draft."""
from __future__ import annotations

import json

from services.agents import prompts
from services.agents.common import AgentReplyError, cause_of, current_spec, reply_output, usage
from services.agents.runtime import AgentContext, AgentSpec
from services.core.messages import Message
from services.domain.pipeline import MAX_REPAIR_ROUNDS, Pipeline


def quality_score(checks: list[dict], repair_rounds: int, confidence: float = 1.0) -> float:
    """Share of checks passed, less a tenth per repair round it took, scaled by the planner's confidence."""
    if not checks:
        return 0.0
    passed = sum(1 for c in checks if c.get("passed"))
    return round(max(0.0, passed / len(checks) - 0.1 * repair_rounds) * confidence, 3)


def _checks(event: Message) -> list[dict]:
    return json.loads(event.payload.get("checks_json") or "[]")


def build() -> AgentSpec:
    async def on_passed(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        checks = _checks(event)
        await ctx.propose(event, "CompleteDraft", {
            "revision": pipeline.revision, "quality_score": quality_score(checks, pipeline.repair_round),
            "checks_passed": [c["name"] for c in checks if c.get("passed")], "passed_qa": True})

    async def on_failed(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        if pipeline.repair_round >= MAX_REPAIR_ROUNDS:
            checks = _checks(event)
            await ctx.propose(event, "CompleteDraft", {
                "revision": pipeline.revision, "quality_score": quality_score(checks, pipeline.repair_round),
                "checks_passed": [c["name"] for c in checks if c.get("passed")], "passed_qa": False})
            return
        findings = list(event.payload.get("findings") or [])
        artifacts = {k: pipeline.current.get(k) for k in ("extract_sql", "transform_sql", "target_ddl", "python_code")}
        await ctx.ask(event, pipeline, task="reflect", prompt_version=prompts.REFLECT_VERSION,
                      messages=prompts.reflect_messages(current_spec(pipeline), findings, artifacts),
                      input={"failures": findings, "artifacts": artifacts, "spec": current_spec(pipeline)},
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

    return AgentSpec("reflector", {"QaPassed": on_passed, "QaFailed": on_failed}, on_reply)
