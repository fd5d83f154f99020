"""The Pipeline aggregate: every rule about a pipeline's life lives here.

Event classes are named exactly like their Avro records (``Pipeline.PipelineRequested`` is
``aietl.pipelines.v1.PipelineRequested``), so the bridge in :mod:`services.domain.events` maps one to
the other without a table. State is never stored: it is the fold of the pipeline's events through the
library's mutators.
"""
from __future__ import annotations

from typing import Optional
from uuid import UUID

from eventsourcing.domain import Aggregate, event


class PipelineError(Exception):
    """A command broke a rule of the Pipeline aggregate; nothing was changed."""

    code = "pipeline_error"


class PipelineExistsError(PipelineError):
    code = "pipeline_exists"


class PipelineNotFoundError(PipelineError):
    code = "pipeline_not_found"


class DescriptionError(PipelineError):
    code = "invalid_description"


MAX_DESCRIPTION = 4000


def check_description(description: str) -> None:
    if not description or not description.strip():
        raise DescriptionError("description must not be empty")
    if len(description) > MAX_DESCRIPTION:
        raise DescriptionError(f"description is longer than {MAX_DESCRIPTION} characters")


class Pipeline(Aggregate):
    """A pipeline: from a request, through drafts, to deployed versions."""

    @staticmethod
    def create_id(pipeline_id: UUID, **_: object) -> UUID:
        # Ids are chosen by the gateway so the HTTP answer can name the pipeline before it exists.
        return pipeline_id

    @event("PipelineRequested")
    def __init__(self, pipeline_id: UUID, tenant_id: str, description: str, name: Optional[str],
                 labels: dict, command_id: str):
        self.tenant_id = tenant_id
        self.description = description
        self.name = name
        self.labels = dict(labels)
        self.status = "requested"
        self.command_ids = {command_id}

    @classmethod
    def request(cls, pipeline_id: UUID, tenant_id: str, description: str, name: Optional[str],
                labels: dict, command_id: str) -> "Pipeline":
        check_description(description)
        return cls(pipeline_id=pipeline_id, tenant_id=tenant_id, description=description, name=name,
                   labels=labels, command_id=command_id)
