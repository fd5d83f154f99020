"""planner: a request (or a revision) in, a spec, a clarification question or a refusal out."""
from __future__ import annotations

import asyncio
import json

from pydantic import ValidationError

from services.agents import prompts
from services.agents.common import AgentReplyError, cause_of, reply_output, usage
from services.agents.runtime import AgentContext, AgentSpec
from services.core.messages import Message
from services.domain.pipeline import Pipeline
from services.domain.spec import PipelineSpec


def request_text(pipeline: Pipeline) -> str:
    """The description, plus every revision's instructions so far (they refine, not replace, it)."""
    parts = [pipeline.description] + list(pipeline.current.get("instructions") or [])
    return "\n".join(parts) if pipeline.revision > 1 else pipeline.description


def build(memory=None, connections=None, catalog=None) -> AgentSpec:
    async def on_request(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        text = request_text(pipeline)
        recalled = []
        if memory is not None:
            recalled = await asyncio.to_thread(memory.recall, pipeline.tenant_id, text, 3, event.pipeline_id)
        defaults = await asyncio.to_thread(connections, pipeline.tenant_id) if connections else None
        task_input = {"text": text, "default_connections": defaults}
        if catalog is not None:  # the tenant's tables and columns (services/connectors/catalog.py)
            task_input["catalog"] = await asyncio.to_thread(catalog, pipeline.tenant_id)
        if getattr(pipeline, "answers", None):  # answered clarifications: their slots are filled
            task_input["answers"] = list(pipeline.answers)
        await ctx.ask(event, pipeline, task="plan", prompt_version=prompts.PLAN_VERSION,
                      messages=prompts.plan_messages(text, PipelineSpec.model_json_schema(), recalled),
                      input=task_input,
                      context={"recalled_ids": [r["id"] for r in recalled]})

    async def on_draft(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        if memory is not None and event.payload.get("passed_qa"):
            draft = pipeline.drafts[-1]
            await asyncio.to_thread(memory.remember, pipeline.tenant_id, event.pipeline_id,
                                    event.payload["draft_version"], request_text(pipeline), draft["spec_json"])

    async def on_reply(ctx: AgentContext, reply: Message, pipeline: Pipeline, context: dict) -> None:
        cause = cause_of(reply, context)
        base = {"revision": context["revision"], "llm": usage(reply)}
        try:
            out = reply_output(reply)
        except AgentReplyError as exc:
            await ctx.propose(cause, "RecordClarification", {
                **base, "question": f"The planner could not get an answer ({exc}). Please try again or "
                                    "rephrase the request.", "missing": ["plan"]})
            return
        if out.get("outcome") == "refuse":
            await ctx.propose(cause, "RecordRefusal", {**base, "reason": str(out.get("reason"))})
        elif out.get("outcome") == "plan":
            try:
                spec = PipelineSpec.model_validate(out.get("spec"))
            except ValidationError as exc:
                await ctx.propose(cause, "RecordClarification", {
                    **base, "question": f"The plan was incomplete: {exc.errors()[0]['msg']}. Can you say "
                                        "more precisely what to load and where?", "missing": ["spec"]})
                return
            await ctx.propose(cause, "RecordPlan", {
                **base, "spec_json": spec.model_dump_json(), "understood": list(out.get("understood") or []),
                "confidence": float(out.get("confidence", 1.0)), "recalled_ids": context.get("recalled_ids", [])})
        else:
            await ctx.propose(cause, "RecordClarification", {
                **base, "question": str(out.get("question") or "What exactly should be loaded, from where, to where?"),
                "missing": list(out.get("missing") or [])})

    return AgentSpec("planner", {"PipelineRequested": on_request, "RevisionRequested": on_request,
                                 "DraftCompleted": on_draft}, on_reply)
