"""Versioned prompts. The version is part of every cache key: changing a prompt means bumping it.

Each prompt asks for the same JSON the builtin provider returns, so any provider can stand in for another.
"""
from __future__ import annotations

import json

PLAN_VERSION = "plan-v1"
SQL_VERSION = "sql-v1"
PYTHON_VERSION = "python-v1"
REFLECT_VERSION = "reflect-v1"

_PLAN_SYSTEM = (
    "You turn a data-engineering request into a pipeline spec. Answer with one JSON object: "
    '{"outcome": "plan", "spec": <PipelineSpec>, "understood": [phrases], "confidence": 0..1} or '
    '{"outcome": "clarify", "question": "...", "missing": [...]} when something needed is not stated '
    '(never guess a table, engine or column), or {"outcome": "refuse", "reason": "..."} for requests that '
    "delete, drop, truncate or modify a source. PipelineSpec JSON Schema:\n")
_SQL_SYSTEM = (
    "You write the SQL of a pipeline. Answer with one JSON object: {\"extract_sql\": read-only SELECT in "
    "the source dialect or null, \"transform_sql\": DuckDB SELECT over the relation `batch` or null, "
    "\"target_ddl\": CREATE TABLE IF NOT EXISTS for the target in its dialect (ClickHouse: no Map, no "
    "DateTime64), \"dialects\": {...}}. Source SQL must be one read-only statement.")
_PYTHON_SYSTEM = (
    "You write a pure Python function `def transform(batch):` taking and returning a list of dicts. Only "
    "math, re, datetime, decimal, hashlib, json are available; no I/O. Answer {\"python_code\": \"...\"}.")
_REFLECT_SYSTEM = (
    "QA rejected a pipeline draft. Turn the failures into precise repair instructions for the SQL and "
    "code authors. Answer {\"instructions\": [\"...\"]}.")


def plan_messages(text: str, spec_schema: dict, recalled: list[dict]) -> list[dict]:
    user = text
    if recalled:
        user += "\n\nSimilar past pipelines (for reference only):\n" + json.dumps(recalled, ensure_ascii=False)
    return [{"role": "system", "content": _PLAN_SYSTEM + json.dumps(spec_schema)},
            {"role": "user", "content": user}]


def sql_messages(spec: dict, source_columns, instructions: list[str]) -> list[dict]:
    user = {"spec": spec, "source_columns": source_columns, "repair_instructions": instructions}
    return [{"role": "system", "content": _SQL_SYSTEM},
            {"role": "user", "content": json.dumps(user, ensure_ascii=False, default=str)}]


def python_messages(spec: dict, columns) -> list[dict]:
    return [{"role": "system", "content": _PYTHON_SYSTEM},
            {"role": "user", "content": json.dumps({"spec": spec, "columns": columns}, ensure_ascii=False)}]


def reflect_messages(spec: dict, findings: list[str], artifacts: dict) -> list[dict]:
    user = {"spec": spec, "failures": findings, "artifacts": artifacts}
    return [{"role": "system", "content": _REFLECT_SYSTEM},
            {"role": "user", "content": json.dumps(user, ensure_ascii=False, default=str)}]
