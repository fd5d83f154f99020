"""Request and response bodies of the HTTP command API."""
from __future__ import annotations

import json
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.domain.pipeline import MAX_DESCRIPTION

# Field bounds keep every command far below Kafka's message size limit (~1 MB), so a big field is a 422
# here rather than a producer error.
MAX_LABELS = 50
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=63)]
LabelValue = Annotated[str, StringConstraints(max_length=256)]
MAX_PARAMS_BYTES = 64 * 1024


class CreatePipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"description": "Load only paid orders with a positive amount from PostgreSQL shop.orders into "
                        "ClickHouse analytics.daily_revenue, summing amount per day"},
        {"description": "copy orders to ClickHouse", "name": "orders-copy", "labels": {"team": "bi"}},
    ]})

    description: str = Field(..., min_length=1, max_length=MAX_DESCRIPTION,
                             description="What the pipeline should do, in English or Russian.")
    name: Optional[str] = Field(None, max_length=200, description="A human name for the pipeline.")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS,
                                               description="Free-form labels (at most 50; keys up to 63 "
                                                           "characters, values up to 256).")

    @field_validator("description")
    @classmethod
    def not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("description must not be blank")
        return v


class Links(BaseModel):
    self: str
    events: str


class Accepted(BaseModel):
    pipeline_id: str
    command_id: str
    status: str = "accepted"
    links: Links


class ReviseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"instructions": "only orders from RU, and load into analytics.daily_revenue_ru"}]})

    instructions: str = Field(..., min_length=1, max_length=MAX_DESCRIPTION,
                              description="What to change, in English or Russian.")

    @field_validator("instructions")
    @classmethod
    def not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("instructions must not be blank")
        return v


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"answer": "shop.order_items"}, {"answer": "ignore it", "slot": "unrecognized:pls"}]})

    answer: str = Field(..., min_length=1, max_length=MAX_DESCRIPTION,
                        description="The answer to the pipeline's open question, in English or Russian.")
    slot: Optional[str] = Field(None, min_length=1, max_length=200,
                                description="Which of the question's `missing` slots this answers; the "
                                            "first one when omitted.")

    @field_validator("answer")
    @classmethod
    def not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("answer must not be blank")
        return v


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"version": 2}]})

    version: Optional[int] = Field(None, ge=1, description="Draft version to deploy; the latest when omitted.")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 1}]})

    version: int = Field(..., ge=1, description="An earlier deployed version to make current again.")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"params": {"file": "a.csv"}}]})

    params: dict[str, Any] = Field(default_factory=dict, description="Run parameters, e.g. a file name "
                                                                     "(at most 64 KiB as JSON).")

    @field_validator("params")
    @classmethod
    def bounded(cls, v: dict) -> dict:
        if len(json.dumps(v, default=str)) > MAX_PARAMS_BYTES:
            raise ValueError(f"params must be at most {MAX_PARAMS_BYTES} bytes as JSON")
        return v


class CancelRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "wrong input file"}]})

    reason: Optional[str] = Field(None, min_length=1, max_length=500, description="Why the run should stop.")
