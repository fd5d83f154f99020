"""Spec -> code: extraction SQL, DuckDB transform SQL and target DDL compiled from a ``PipelineSpec``.

Whatever the spec can express is compiled here, per dialect, never generated; the SQL expert uses it as
the builtin provider's answer and as the reference a model's SQL is checked against. The executor uses
its table quoting.
"""
from __future__ import annotations

from .sqlgen import generate_sql

__all__ = ["generate_sql"]
