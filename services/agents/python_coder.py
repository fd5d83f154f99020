"""python-coder: when a plan needs code, a pure ``transform(batch)`` function."""
from __future__ import annotations

from services.agents import prompts
from services.agents.common import AgentReplyError, cause_of, current_spec, needs_python, reply_output, usage
from services.agents.runtime import AgentContext, AgentSpec
from services.core.messages import Message
from services.domain.pipeline import Pipeline


def build() -> AgentSpec:
    async def on_sql(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        spec = current_spec(pipeline)
        if not needs_python(spec):
            return  # the schema analyst takes SqlProposed directly
        await ctx.ask(event, pipeline, task="python", prompt_version=prompts.PYTHON_VERSION,
                      messages=prompts.python_messages(spec, None), input={"spec": spec},
                      complexity="high", repair_round=pipeline.repair_round)

    async def on_reply(ctx: AgentContext, reply: Message, pipeline: Pipeline, context: dict) -> None:
        try:
            code = str(reply_output(reply).get("python_code") or "")
        except AgentReplyError as exc:
            code = f"# no code could be generated: {exc}\n"
        await ctx.propose(cause_of(reply, context), "RecordTransform",
                          {"revision": context["revision"], "python_code": code, "llm": usage(reply)})

    return AgentSpec("python-coder", {"SqlProposed": on_sql}, on_reply)
