"""planner: a request (or a revision) in, a spec, a clarification question or a refusal out.

Refusal rules run here, before any model is asked: a request to delete or modify data is refused by
the understanding's own rule whatever the configured providers would have answered. The router reviews
every answer against the plan contract (services.llm_router.contract), repairs it with the model, falls
back to the next provider, and only when every provider's answer was rejected does the planner ask the
user, naming the fields. A provider outage is not the user's problem: drafting fails as retryable and
``/revise`` with "retry" runs the same request again.
"""
from __future__ import annotations

import asyncio
import re
from typing import Optional

from services.agents import prompts
from services.agents.common import AgentReplyError, cause_of, reply_output, usage
from services.agents.runtime import AgentContext, AgentSpec
from services.core.messages import Message
from services.domain.pipeline import Pipeline
from services.domain.spec import PipelineSpec
from services.llm_router.contract import ANSWER_REJECTED, rejected_fields, review_plan
from services.understanding.rules import destructive_word

# A revision saying only this re-runs the request unchanged (after an outage); it adds no words to it.
RETRY = re.compile(r"^\s*(retry|try again|again|повтори(ть)?|ещё раз|еще раз)\s*[.!]?\s*$", re.I)


def request_text(pipeline: Pipeline) -> str:
    """The description, plus every revision's instructions so far (they refine, not replace, it)."""
    instructions = [i for i in pipeline.current.get("instructions") or [] if not RETRY.match(i)]
    parts = [pipeline.description] + instructions
    return "\n".join(parts) if pipeline.revision > 1 else pipeline.description


def refusal_reason(word: str) -> str:
    return (f"Refused: {word!r} asks to delete or change data. aietl pipelines only read their sources and "
            "load copies; describe what to load instead.")


def outage_reason(pipeline_id: str, message: str) -> str:
    return (f"retryable: no language model could answer ({message[:600]}). Nothing is wrong with the request: "
            f"run it again with POST /api/v1/pipelines/{pipeline_id}/revise "
            '{"instructions": "retry"} once the provider is back.')


def rejected_question(fields: list[str], detail: str) -> str:
    named = ", ".join(fields) or "the spec"
    return (f"I could not build a valid plan; these fields are unclear: {named} ({detail[:400]}). "
            "Can you say precisely what they should be?")


WARM_UP_TEXT = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders"


def build(memory=None, connections=None, catalog=None, warm_tenant: Optional[str] = None,
          model_plans: bool = True) -> AgentSpec:
    """``model_plans``: a language model may answer the plan task. Without one, recalled drafts and worked
    examples (a MiniLM embedding and a builtin compile per request) would only feed a prompt nobody reads."""
    async def on_request(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        text = request_text(pipeline)
        word = destructive_word(text)
        if word:
            await ctx.propose(event, "RecordRefusal", {"revision": pipeline.revision, "llm": None,
                                                       "reason": refusal_reason(word)})
            return
        recalled = []
        if memory is not None and model_plans:
            recalled = await asyncio.to_thread(memory.recall, pipeline.tenant_id, text, 3, event.pipeline_id)
        defaults = await asyncio.to_thread(connections, pipeline.tenant_id) if connections else None
        task_input = {"text": text, "default_connections": defaults}
        if catalog is not None:  # the tenant's tables and columns (services/connectors/catalog.py)
            task_input["catalog"] = await asyncio.to_thread(catalog, pipeline.tenant_id)
        if getattr(pipeline, "answers", None):  # answered clarifications: their slots are filled
            task_input["answers"] = list(pipeline.answers)
        examples = await asyncio.to_thread(prompts.plan_examples, text, defaults) if model_plans else []
        messages = prompts.plan_messages(text, catalog=task_input.get("catalog"), default_connections=defaults,
                                         recalled=recalled, examples=examples)
        await ctx.ask(event, pipeline, task="plan", prompt_version=prompts.PLAN_VERSION, messages=messages,
                      input=task_input, context={"recalled_ids": [r["id"] for r in recalled],
                                                 "default_connections": defaults})

    async def on_draft(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        if memory is not None and event.payload.get("passed_qa"):
            draft = pipeline.drafts[-1]
            await asyncio.to_thread(memory.remember, pipeline.tenant_id, event.pipeline_id,
                                    event.payload["draft_version"], request_text(pipeline), draft["spec_json"])

    async def on_reply(ctx: AgentContext, reply: Message, pipeline: Pipeline, context: dict) -> None:
        cause = cause_of(reply, context)
        base = {"revision": context["revision"], "llm": usage(reply)}
        if reply.short_name != "LlmTaskCompleted" and reply.payload.get("error_code") == ANSWER_REJECTED:
            message = str(reply.payload.get("message") or "")
            fields = rejected_fields(message)
            await ctx.propose(cause, "RecordClarification", {
                **base, "question": rejected_question(fields, message.split("\n", 1)[0]),
                "missing": fields or ["spec"]})
            return
        try:
            out = reply_output(reply)
        except AgentReplyError as exc:
            await ctx.propose(cause, "FailDrafting", {"revision": context["revision"], "stage": pipeline.status,
                                                      "reason": outage_reason(reply.pipeline_id, str(exc))})
            return
        # The router reviewed it already; the same review here means no older path can slip one past.
        verdict = review_plan(out, {"default_connections": context.get("default_connections")})
        out = verdict.output
        if not verdict.ok:
            await ctx.propose(cause, "RecordClarification", {
                **base, "question": rejected_question(verdict.fields(), "; ".join(verdict.errors)),
                "missing": verdict.fields()})
        elif out["outcome"] == "refuse":
            await ctx.propose(cause, "RecordRefusal", {**base, "reason": str(out.get("reason"))})
        elif out["outcome"] == "plan":
            spec = PipelineSpec.model_validate(out["spec"])
            await ctx.propose(cause, "RecordPlan", {
                **base, "spec_json": spec.model_dump_json(), "understood": list(out.get("understood") or []),
                "confidence": float(out.get("confidence", 1.0)), "recalled_ids": context.get("recalled_ids", [])})
        else:
            await ctx.propose(cause, "RecordClarification", {
                **base, "question": str(out.get("question") or "What exactly should be loaded, from where, to where?"),
                "missing": list(out.get("missing") or [])})

    def warm_up() -> None:
        if memory is not None:
            memory.warm_up()
        prompts.plan_examples(WARM_UP_TEXT, None)  # the offline understanding: its imports and patterns
        if catalog is not None and warm_tenant:  # the deployment's own tenant: its catalog built (or cached)
            catalog(warm_tenant)

    return AgentSpec("planner", {"PipelineRequested": on_request, "RevisionRequested": on_request,
                                 "DraftCompleted": on_draft}, on_reply, warm_up=warm_up)
