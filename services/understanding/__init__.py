"""Offline understanding: a deterministic reader of English and Russian ETL requests (docs/builtin-provider.md).

``compile_request(text)`` turns a request into a ``PipelineSpec`` (as JSON), a clarification question or a
refusal. It is the ``builtin`` provider's answer to the planner's task; the LLM router calls it like any
other provider. It never writes SQL: that is ``services.spec_compiler``'s job.
"""
from __future__ import annotations

from .compiler import compile_request

__all__ = ["compile_request"]
