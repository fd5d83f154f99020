"""The command mapper: HTTP requests become Avro commands on ``pipelines.commands.v1``."""
from __future__ import annotations

import json
import uuid

from gateway_api.models import AnswerRequest, CreatePipelineRequest, ReviseRequest
from services.core.messages import Message, new_envelope

CREATE_PIPELINE = "aietl.pipelines.v1.CreatePipeline"
REVISE_PIPELINE = "aietl.pipelines.v1.RevisePipeline"


def create_pipeline(req: CreatePipelineRequest, *, tenant_id: str, actor: str) -> Message:
    pipeline_id = str(uuid.uuid4())
    env = new_envelope(CREATE_PIPELINE, tenant_id=tenant_id, actor=actor, pipeline_id=pipeline_id)
    return Message(CREATE_PIPELINE, env, {"description": req.description, "name": req.name,
                                          "labels": dict(req.labels)})


def revise_pipeline(pipeline_id: str, req: ReviseRequest, *, tenant_id: str, actor: str) -> Message:
    env = new_envelope(REVISE_PIPELINE, tenant_id=tenant_id, actor=actor, pipeline_id=pipeline_id)
    return Message(REVISE_PIPELINE, env, {"instructions": req.instructions, "slot": None})


def answer_pipeline(pipeline_id: str, req: AnswerRequest, slot: str, *, tenant_id: str, actor: str) -> Message:
    """An answer is a revision that fills one slot of the open question (RevisePipeline with ``slot``)."""
    env = new_envelope(REVISE_PIPELINE, tenant_id=tenant_id, actor=actor, pipeline_id=pipeline_id)
    return Message(REVISE_PIPELINE, env, {"instructions": req.answer, "slot": slot})


def pipeline_command(short_name: str, pipeline_id: str, payload: dict, *, tenant_id: str, actor: str) -> Message:
    """Any other command on an existing pipeline: lifecycle (deploy, pause, ...), runs and cancellations."""
    name = f"aietl.pipelines.v1.{short_name}"
    env = new_envelope(name, tenant_id=tenant_id, actor=actor, pipeline_id=pipeline_id)
    return Message(name, env, dict(payload))


def trigger_run(pipeline_id: str, *, run_id: str, trigger_kind: str, params: dict, tenant_id: str,
                actor: str) -> Message:
    return pipeline_command("TriggerRun", pipeline_id, {"run_id": run_id, "trigger_kind": trigger_kind,
                                                        "params_json": json.dumps(params), "slot": None},
                            tenant_id=tenant_id, actor=actor)
