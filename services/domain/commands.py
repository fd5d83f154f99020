"""Command handlers: one small function per command, registered in one place (``HANDLERS``).

A handler gets the aggregate as rebuilt from the log (or ``None``) and the command; it calls the
aggregate, whose ``check_*`` rules raise ``*Error`` when the command is not allowed. The result is the
list of new events, or a single ``CommandRejected`` that changes nothing.
"""
from __future__ import annotations

from typing import Callable, Optional
from uuid import UUID

from services.core.messages import Message, new_envelope
from services.domain.events import replay, to_message
from services.domain.pipeline import Pipeline, PipelineError, PipelineExistsError, PipelineNotFoundError

Handler = Callable[[Optional[Pipeline], Message], Pipeline]
HANDLERS: dict[str, Handler] = {}
REJECTED = "aietl.pipelines.v1.CommandRejected"


class UnknownCommandError(PipelineError):
    code = "unknown_command"


def handles(short_name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[short_name] = fn
        return fn
    return register


@handles("CreatePipeline")
def create_pipeline(current: Optional[Pipeline], cmd: Message) -> Pipeline:
    if current is not None:
        current.check_tenant(cmd.envelope["tenant_id"])
        raise PipelineExistsError(f"pipeline {cmd.pipeline_id} already exists")
    return Pipeline.request(pipeline_id=UUID(cmd.pipeline_id), tenant_id=cmd.envelope["tenant_id"],
                            description=cmd.payload["description"], name=cmd.payload.get("name"),
                            labels=cmd.payload.get("labels") or {}, command_id=cmd.message_id)


def _existing(current: Optional[Pipeline], cmd: Message) -> Pipeline:
    """The pipeline a command acts on: it must exist and be the command's tenant's."""
    if current is None:
        raise PipelineNotFoundError(f"no pipeline {cmd.pipeline_id}")
    current.check_tenant(cmd.envelope["tenant_id"])
    return current


def _calls(method: str) -> Handler:
    """A handler that calls one aggregate method with the command's payload."""

    def handler(current: Optional[Pipeline], cmd: Message) -> Pipeline:
        getattr(_existing(current, cmd), method)(**cmd.payload, command_id=cmd.message_id)
        return current

    handler.__name__ = method
    return handler


# Commands that map one-to-one onto an aggregate method (the method holds the rules).
for _command, _method in {
    "RevisePipeline": "revise",
    "RecordPlan": "propose_plan",
    "RecordClarification": "ask_clarification",
    "RecordRefusal": "refuse",
    "RecordSql": "propose_sql",
    "RecordTransform": "propose_transform",
    "RecordSchemaCheck": "record_schema_check",
    "RecordQaResult": "record_qa",
    "RecordReflection": "reflect",
    "CompleteDraft": "complete_draft",
    "FailDrafting": "fail_drafting",
    "DeployPipeline": "deploy",
    "RollbackPipeline": "rollback",
    "PausePipeline": "pause",
    "ResumePipeline": "resume",
    "DeletePipeline": "delete",
    "TriggerRun": "trigger_run",             # the gateway: manual runs and signed webhooks
    "TriggerScheduledRun": "trigger_run",    # the scheduler: a due cron slot
    "TriggerRunFromMessage": "trigger_run",  # kafka-trigger: a matching message
    "CancelRun": "cancel_run",
}.items():
    HANDLERS[_command] = _calls(_method)


@handles("ExpireStage")
def expire_stage(current: Optional[Pipeline], cmd: Message) -> Pipeline:
    # The command's own time is "now": replaying it later decides the same way.
    _existing(current, cmd).expire_stage(**cmd.payload, now=cmd.envelope["occurred_at"], command_id=cmd.message_id)
    return current


def rejection(cmd: Message, code: str, reason: str) -> Message:
    env = new_envelope(REJECTED, tenant_id=cmd.envelope["tenant_id"], pipeline_id=cmd.pipeline_id,
                       correlation_id=cmd.envelope["correlation_id"], causation_id=cmd.message_id,
                       actor="service:pipeline-aggregate")
    return Message(REJECTED, env, {"command_id": cmd.message_id, "command_type": cmd.name,
                                   "error_code": code, "reason": reason})


def apply_command(history: list[Message], cmd: Message, run_status=None) -> list[Message]:
    """Decide a command against the pipeline's logged history; returns the events to append.
    ``run_status(run_id)``: a run's terminal status on runs.events.v1, or None (for CancelRun)."""
    handler = HANDLERS.get(cmd.short_name)
    try:
        if handler is None:
            raise UnknownCommandError(f"no handler for command {cmd.name}")
        if cmd.short_name == "CancelRun" and run_status is not None:
            cmd = Message(cmd.name, cmd.envelope, {**cmd.payload, "run_status": run_status(cmd.payload["run_id"])})
        aggregate = handler(replay(history), cmd)
    except PipelineError as exc:
        return [rejection(cmd, exc.code, str(exc))]
    return [to_message(ev, context="pipelines", cause=cmd) for ev in aggregate.collect_events()]
