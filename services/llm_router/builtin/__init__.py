"""The ``builtin`` LLM provider: an offline, deterministic compiler for a documented subset of English
and Russian ETL requests (docs/builtin-provider.md).

``compile_request(text)`` answers the planner's prompt (a plan, a clarification question or a refusal);
``generate_sql(spec, source_columns)`` answers the SQL expert's prompt (extract SQL, DuckDB transform SQL,
target DDL). Both are pure functions: same input, same output.
"""
from __future__ import annotations

from .compiler import compile_request
from .sqlgen import generate_sql

__all__ = ["compile_request", "generate_sql"]
