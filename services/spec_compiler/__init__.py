"""Spec -> code: extraction SQL, DuckDB transform SQL and target DDL compiled from a ``PipelineSpec``.

Whatever the spec can express is compiled here, per dialect, never generated; the SQL expert uses it as
the builtin provider's answer and as the reference a model's SQL is checked against. ``output_shape`` and
``grain`` say what the output must look like (QA checks drafts and dry runs against them);
``needs_whole_input`` says when a transform is only right over the whole input. The executor uses its
table quoting.
"""
from __future__ import annotations

from .shape import grain, needs_whole_input, output_shape
from .sqlgen import SqlGenerationError, generate_sql

__all__ = ["generate_sql", "output_shape", "grain", "needs_whole_input", "SqlGenerationError"]
