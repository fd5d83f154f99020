"""Versioned prompts. The version is part of every cache key: changing a prompt means bumping it.

Each prompt asks for the same JSON the builtin provider returns, so any provider can stand in for another.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Optional

PLAN_VERSION = "plan-v2"
SQL_VERSION = "sql-v1"
PYTHON_VERSION = "python-v1"
REFLECT_VERSION = "reflect-v1"

# The plan prompt: the contract first (it is the same for every request, so a local server reuses its
# evaluated prefix), then worked examples, then the tenant's data and the request.
_PLAN_SYSTEM = """You turn one data-engineering request into a pipeline spec. Answer with ONE JSON object and nothing else, in one of three shapes:
{"outcome": "plan", "spec": <Spec>, "understood": ["phrase -> what it became", ...]}
{"outcome": "clarify", "question": "<one precise question>", "missing": ["<spec field>", ...]}
{"outcome": "refuse", "reason": "<why>"}
Rules:
- Use only the connection names, tables and columns listed under "Data". Never invent a name. When the request does not say what to read or where to load and nothing listed fits, clarify and name the missing field.
- Write table names exactly as the request or the listing writes them, schema included ("analytics.orders", not "orders"). Each endpoint's connection is one of the listed connections of the same kind.
- Omit every optional field the request does not need. Never write null.
- A schedule is "schedule": {"cron": "<5-field cron>"} together with "trigger": {"kind": "cron"}: "every day at 2 AM" = "0 2 * * *", "every 15 minutes" = "*/15 * * * *", "hourly" = "0 * * * *".
- "trigger.topic" and "trigger.filter" exist only with "trigger.kind": "kafka".
- Streaming from Kafka: "source": {"kind": "kafka", "topic": ...}, "trigger": {"kind": "kafka", "topic": <same>}, "streaming": {"enabled": true, "max_batch_rows": N, "max_batch_seconds": S}.
- "sync" / "upsert on X": "target.load_mode": "merge" with "target.keys": [X] (database targets only). "replace"/"overwrite": load_mode "replace".
- "incrementally by X" / "new or changed rows": "incremental": {"cursor_column": X}; an incremental load cannot aggregate.
- Files: kind "file", "path" is the file name, "format" follows its extension; a file named in a webhook payload is "source.path_param": "file" with "folder", and "trigger": {"kind": "webhook"}.
- Totals per day/week/month: "aggregate": {"period": ..., "time_column": <a time column>, "dimensions": [...], "measures": [{"fn": "sum", "column": ..., "alias": ...}]}.
- Masking, hashing or dropping personal data: "pii": [{"column": "*email*", "action": "mask"}].
- Never delete, drop, truncate or modify data: refuse such requests.
Spec ("?" marks an optional field):
"""
# One example: each costs ~300 prompt tokens, a minute of a CPU model's time per call.
_MAX_EXAMPLES = 1
# Requests the builtin understands, one per kind of pipeline; the prompt shows the builtin's own answers
# for the ones closest to the request (worded apart from any acceptance case on purpose).
EXAMPLE_REQUESTS = (
    "Copy the PostgreSQL table sales.invoices into the ClickHouse table reports.invoices every hour",
    "Load only shipped orders from PostgreSQL sales.orders into ClickHouse reports.shipped_per_day, "
    "counting orders per day",
    "Copy events.csv into the PostgreSQL table public.events, lowercasing names and removing duplicates by event_id",
    "Every 30 minutes, incrementally load new or changed rows of sales.invoices (by modified_at) from "
    "PostgreSQL into ClickHouse reports.invoices_raw",
    "Stream messages from the Kafka topic app.logins into ClickHouse reports.logins in batches of 500 "
    "messages or every 5 seconds, masking phone numbers",
    "Sync crm.accounts from PostgreSQL into ClickHouse reports.accounts, upserting on account_id",
    "Export weekly revenue per region from PostgreSQL sales.invoices to a CSV file weekly_revenue.csv",
)
_MAX_DETAILED_TABLES = 3
_MAX_COLUMNS = 40
_MAX_SAMPLES = 3
_MAX_SAMPLE_CHARS = 24
_MAX_LISTED_TABLES = 40
MAX_DATA_CHARS = 4000
_WORD = re.compile(r"[a-zа-яё0-9]+", re.I)
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


def plan_messages(text: str, *, catalog: Optional[dict] = None, default_connections: Optional[dict] = None,
                  recalled: Iterable[dict] = (), examples: Iterable[tuple[str, dict]] = ()) -> list[dict]:
    """System contract, worked examples (user/assistant turns), then the data slice and the request."""
    from services.llm_router.contract import schema_outline, spec_schema

    data = data_section(text, catalog, default_connections)
    messages = [{"role": "system", "content": _PLAN_SYSTEM + schema_outline(spec_schema())}]
    for request, answer in examples:
        messages.append({"role": "user", "content": f"Request: {request}"})
        messages.append({"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)})
    user = f"Data:\n{data}\n\nRequest: {text}"
    recalled = list(recalled)
    if recalled:
        user += "\n\nSimilar past pipelines (for reference only):\n" + json.dumps(recalled, ensure_ascii=False)[:2000]
    messages.append({"role": "user", "content": user})
    return messages


# ---------------------------------------------------------------------------------- the data slice


def _words(text: str) -> set[str]:
    """Lower-cased words, a plural's "s" dropped: "orders" meets the table "order"."""
    out = set()
    for w in _WORD.findall(text.lower()):
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") else w)
    return out


def _table_score(table: dict, text: str, words: set[str]) -> float:
    name = str(table.get("name") or "")
    lowered = text.lower()
    if name and name.lower() in lowered:
        return 100.0  # named exactly
    short = name.rsplit(".", 1)[-1].lower()
    if short and re.search(rf"(?<![\w.]){re.escape(short)}(?![\w])", lowered):
        return 50.0
    name_words = _words(name.replace("_", " "))
    column_words = set().union(*(_words(str(c.get("name", "")).replace("_", " ")) for c in table.get("columns") or [])
                               ) if table.get("columns") else set()
    return 3.0 * len(words & name_words) + 0.5 * len(words & column_words)


def _column_line(column: dict) -> str:
    samples = [str(v)[:_MAX_SAMPLE_CHARS] for v in (column.get("samples") or [])[:_MAX_SAMPLES]]
    sample_text = f" e.g. {', '.join(samples)}" if samples else ""
    return f"{column.get('name')} {column.get('type', '')}".rstrip() + sample_text


def _connection_line(conn: dict) -> str:
    return f"- connection {conn.get('name')} ({conn.get('kind')}{', default' if conn.get('default') else ''})"


def data_section(text: str, catalog: Optional[dict], default_connections: Optional[dict] = None,
                 max_chars: int = MAX_DATA_CHARS) -> str:
    """The tenant's connections and the tables the request is about (named in it, else most similar
    to its words), with real columns, types and sample values; bounded to ``max_chars``."""
    connections = list((catalog or {}).get("connections") or [])
    if not connections:
        connections = [{"name": name, "kind": kind, "default": True}
                       for kind, name in sorted((default_connections or {}).items())]
    if not connections:
        return "(no connections registered)"
    words = _words(text)
    scored = sorted(((_table_score(t, text, words), ci, ti) for ci, c in enumerate(connections)
                     for ti, t in enumerate(c.get("tables") or [])), key=lambda x: (-x[0], x[1], x[2]))
    detailed = {(ci, ti) for score, ci, ti in scored[:_MAX_DETAILED_TABLES] if score > 0}
    lines: list[str] = [_connection_line(c) for c in connections]
    budget = max_chars - sum(len(line) + 1 for line in lines)
    blocks: dict[int, list[str]] = {}
    for score, ci, ti in scored:
        if (ci, ti) not in detailed:
            continue
        table = connections[ci]["tables"][ti]
        cols = "; ".join(_column_line(c) for c in (table.get("columns") or [])[:_MAX_COLUMNS])
        block = f"  table {table.get('name')}: {cols}"[:max(0, budget)]
        if budget <= 0:
            break
        blocks.setdefault(ci, []).append(block)
        budget -= len(block) + 1
    out: list[str] = []
    for ci, conn in enumerate(connections):
        out.append(lines[ci])
        out += blocks.get(ci, [])
        others = [t.get("name") for ti, t in enumerate(conn.get("tables") or []) if (ci, ti) not in detailed]
        if others and budget > 0:
            listed = f"  other tables: {', '.join(others[:_MAX_LISTED_TABLES])}"[:budget]
            out.append(listed + (" ..." if len(others) > _MAX_LISTED_TABLES else ""))
            budget -= len(listed) + 1
        if conn.get("error"):
            out.append(f"  (could not be read: {str(conn['error'])[:80]})")
    return "\n".join(out)


# ---------------------------------------------------------------------------------- worked examples


def pick_examples(text: str, n: int = _MAX_EXAMPLES) -> list[str]:
    """The example requests sharing the most words with ``text`` (ties: the order above)."""
    words = _words(text)
    ranked = sorted(enumerate(EXAMPLE_REQUESTS), key=lambda ie: (-len(words & _words(ie[1])), ie[0]))
    return [request for _, request in ranked[:n]]


def worked_example(request: str, default_connections: Optional[dict]) -> Optional[dict[str, Any]]:
    """The builtin's answer to ``request``, written as the model should write it (defaults omitted)."""
    from services.domain.spec import PipelineSpec
    from services.understanding import compile_request

    try:
        answer = compile_request(request, default_connections=dict(default_connections or {}))
    except Exception:  # an example the offline grammar no longer reads is left out, not fatal
        return None
    if answer.get("outcome") != "plan":
        return None
    spec = PipelineSpec.model_validate(answer["spec"]).model_dump(mode="json", exclude_defaults=True,
                                                                  exclude={"steps", "notes", "spec_version", "name"})
    # Without "understood": on a CPU model every output token costs a fraction of a second.
    return {"outcome": "plan", "spec": spec}


def plan_examples(text: str, default_connections: Optional[dict]) -> list[tuple[str, dict]]:
    found = ((request, worked_example(request, default_connections)) for request in pick_examples(text))
    return [(request, answer) for request, answer in found if answer is not None]


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
