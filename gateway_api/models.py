"""Request and response bodies of the HTTP command API."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.domain.pipeline import MAX_DESCRIPTION


class CreatePipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"description": "Load only paid orders with a positive amount from PostgreSQL shop.orders into "
                        "ClickHouse analytics.daily_revenue, summing amount per day"},
        {"description": "copy orders to ClickHouse", "name": "orders-copy", "labels": {"team": "bi"}},
    ]})

    description: str = Field(..., min_length=1, max_length=MAX_DESCRIPTION,
                             description="What the pipeline should do, in English or Russian.")
    name: Optional[str] = Field(None, max_length=200, description="A human name for the pipeline.")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels.")

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

    params: dict[str, Any] = Field(default_factory=dict, description="Run parameters, e.g. a file name.")


class CancelRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "wrong input file"}]})

    reason: Optional[str] = Field(None, min_length=1, max_length=500, description="Why the run should stop.")
