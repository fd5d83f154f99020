"""What a model's answer must be, per task: the LLM-facing JSON Schema, a normaliser for harmless
deviations and a reviewer that lists every violation with its path.

The router reviews every answer (a provider's or a cache's) before handing it to an agent: a rejected
answer is sent back to the same model with the errors for at most ``MAX_REPAIRS`` rounds, then counts as
that provider's failure so the next provider is tried, and is never cached. The planner reviews with the
same functions, so the router cannot accept what the agent would reject.

The normaliser only rewrites what has one meaning (an explicit ``null`` for a defaulted field, a
capitalised enum, a cron given without ``trigger.kind``, a bare string where a one-field object or a list
is expected); it never fills a table, an engine or a column the model did not write.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional

from .crosscheck import crosscheck_plan

MAX_REPAIRS = 2
OUTCOMES = ("plan", "clarify", "refuse")
# Spec fields the model never writes: the version is ours, steps are prose the model cannot ground.
_HIDDEN_SPEC_FIELDS = ("spec_version", "steps")
_ENGINE_ALIASES = {"postgresql": "postgres", "pg": "postgres", "psql": "postgres", "pgsql": "postgres",
                   "ch": "clickhouse", "click_house": "clickhouse", "files": "file", "s3": "file",
                   "sqlite3": "sqlite", "rest": "http", "api": "http"}
_FILE_KINDS = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "parquet": "parquet",
               "xml": "xml"}
_OUTCOME_ALIASES = {"clarification": "clarify", "question": "clarify", "ask": "clarify",
                    "refusal": "refuse", "refused": "refuse", "reject": "refuse"}
# Lower-cased enum values, by the key that holds them wherever it appears in a spec.
_ENUM_KEYS = ("kind", "format", "message_format", "load_mode", "period", "fn", "op", "action")
_READ_ONLY = re.compile(r"^\s*(\(\s*)*(select|with)\b", re.I)
_WRITE_WORD = re.compile(r"\b(insert|update|delete|drop|truncate|alter|create|grant|merge|copy)\b", re.I)
_FIELD_LINE = "rejected fields: "
# LlmTaskFailed error codes the agents act on.
ANSWER_REJECTED = "answer_rejected"  # every provider answered; no answer met the task's contract
PROVIDERS_UNAVAILABLE = "providers_unavailable"  # some provider was down, slow or busy: retry later


class AnswerRejected(ValueError):
    """An answer that violates its task's contract; ``errors`` are ``"path: message"`` lines."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclass
class Review:
    output: dict[str, Any]
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def fields(self) -> list[str]:
        return sorted({e.split(":", 1)[0] for e in self.errors})


# ------------------------------------------------------------------------------------------ schemas


def _compact(node: Any, defs: dict[str, Any]) -> Any:
    """Pydantic's JSON Schema without the noise a small model copies: ``$ref`` inlined, ``anyOf [X, null]``
    reduced to X, no titles or defaults (an omitted field takes its default)."""
    if isinstance(node, list):
        return [_compact(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _compact(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o != {"type": "null"}]
        base = {k: v for k, v in node.items() if k not in ("anyOf", "default", "title")}
        if len(options) == 1:
            return {**_compact(options[0], defs), **_compact(base, defs)}
        return {**_compact(base, defs), "anyOf": _compact(options, defs)}
    out = {}
    for key, value in node.items():
        if key in ("title", "default", "$defs") or (key == "description" and len(value) > 90):
            continue  # long descriptions are class docstrings written for developers
        if key == "properties":
            out[key] = {name: _compact(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _compact(value, defs)
    return out


@lru_cache(maxsize=1)
def spec_schema() -> dict[str, Any]:
    """The LLM-facing schema of ``PipelineSpec`` (derived, so it follows the spec as it grows)."""
    from services.domain.spec import PipelineSpec

    raw = PipelineSpec.model_json_schema()
    schema = _compact({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {}))
    for name in _HIDDEN_SPEC_FIELDS:
        schema["properties"].pop(name, None)
    schema.pop("description", None)  # the prompt explains the order of steps in prose
    return schema


def _strings() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}}


@lru_cache(maxsize=1)
def plan_schema() -> dict[str, Any]:
    """The planner's answer: a plan, a question, or a refusal."""
    return {"anyOf": [
        {"type": "object", "additionalProperties": False, "required": ["outcome", "spec"],
         "properties": {"outcome": {"const": "plan"}, "spec": spec_schema(), "understood": _strings(),
                        "confidence": {"type": "number"}}},
        {"type": "object", "additionalProperties": False, "required": ["outcome", "question", "missing"],
         "properties": {"outcome": {"const": "clarify"}, "question": {"type": "string"}, "missing": _strings()}},
        {"type": "object", "additionalProperties": False, "required": ["outcome", "reason"],
         "properties": {"outcome": {"const": "refuse"}, "reason": {"type": "string"}}},
    ]}


def sql_schema() -> dict[str, Any]:
    text = {"type": ["string", "null"]}
    return {"type": "object", "required": ["extract_sql", "transform_sql", "target_ddl"],
            "properties": {"extract_sql": text, "transform_sql": text, "target_ddl": text,
                           "extract_sql_initial": text, "target_setup_sql": _strings(), "notes": _strings()}}


def answer_schema(task: str) -> Optional[dict[str, Any]]:
    """The JSON Schema a structured-output request carries for ``task`` (None: JSON mode only)."""
    if task == "plan":
        return plan_schema()
    if task == "sql":
        return sql_schema()
    if task == "reflect":
        return {"type": "object", "required": ["instructions"], "properties": {"instructions": _strings()}}
    if task == "python":
        return {"type": "object", "required": ["python_code"], "properties": {"python_code": {"type": "string"}}}
    return None


# ------------------------------------------------------------------------------------------ normaliser


def _drop_nulls(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_drop_nulls(v) for v in node]
    return node


def _lower_enums(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: v.strip().lower() if k in _ENUM_KEYS and isinstance(v, str) else _lower_enums(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_lower_enums(v) for v in node]
    return node


def _endpoint(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    kind = node.get("kind")
    if isinstance(kind, str):
        kind = _ENGINE_ALIASES.get(kind, kind)
        if kind in _FILE_KINDS and not node.get("format"):  # "kind": "csv" names the format of a file
            node["format"], kind = _FILE_KINDS[kind], "file"
        node["kind"] = kind
    if isinstance(node.get("keys"), str):
        node["keys"] = [node["keys"]]
    return node


def normalise_spec(spec: Any) -> Any:
    """``spec`` with the harmless deviations undone (a copy; anything unrecognised is left as it is)."""
    if not isinstance(spec, dict):
        return spec
    spec = _lower_enums(_drop_nulls(copy.deepcopy(spec)))
    for name in _HIDDEN_SPEC_FIELDS:
        spec.pop(name, None)
    for name in ("aggregate", "incremental", "schedule", "transform", "streaming", "trigger"):
        if spec.get(name) == {}:
            del spec[name]  # an empty object says nothing; its default applies
    for name in ("source", "target"):
        if name in spec:
            spec[name] = _endpoint(spec[name])
    if isinstance(spec.get("schedule"), str):
        spec["schedule"] = {"cron": spec["schedule"]}
    if isinstance(spec.get("trigger"), str):
        spec["trigger"] = {"kind": spec["trigger"].lower()}
    aggregate = spec.get("aggregate")
    if isinstance(aggregate, dict) and isinstance(aggregate.get("dimensions"), str):
        aggregate["dimensions"] = [aggregate["dimensions"]]
    for name in ("select", "notes"):
        if isinstance(spec.get(name), str):
            spec[name] = [spec[name]]
    _settle_trigger(spec)
    return spec


def _settle_trigger(spec: dict[str, Any]) -> None:
    schedule, trigger = spec.get("schedule"), spec.get("trigger")
    has_cron = isinstance(schedule, dict) and bool(schedule.get("cron"))
    if has_cron and (trigger is None or (isinstance(trigger, dict) and "kind" not in trigger)):
        spec["trigger"] = {**(trigger or {}), "kind": "cron"}  # a cron alone says when: that is a cron trigger
    trigger = spec.get("trigger")
    if isinstance(trigger, dict) and trigger.get("kind") not in (None, "kafka"):
        trigger.pop("topic", None)  # a non-kafka trigger has no topic or filter to honour
        trigger.pop("filter", None)


def normalise_plan(out: dict[str, Any]) -> dict[str, Any]:
    out = dict(out)
    outcome = out.get("outcome")
    if isinstance(outcome, str):
        outcome = outcome.strip().lower()
        out["outcome"] = _OUTCOME_ALIASES.get(outcome, outcome)
    elif "spec" in out and "question" not in out:
        out["outcome"] = "plan"
    if "spec" in out:
        out["spec"] = normalise_spec(out["spec"])
    if isinstance(out.get("missing"), str):
        out["missing"] = [out["missing"]]
    return {k: v for k, v in out.items() if v is not None}


# ------------------------------------------------------------------------------------------ review


def _path(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _pydantic_errors(exc: Any, prefix: str) -> list[str]:
    """Every error with its path; a union's per-branch noise ("value.str", "value.int") is folded."""
    lines: list[str] = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p in ("str", "int", "float", "bool", "list")
                                              or str(p).startswith(("list[", "function-")))]
        msg = err["msg"].removeprefix("Value error, ")
        line = f"{_path((prefix, *loc))}: {msg}"
        if line not in lines:
            lines.append(line)
    return lines


def _connections(context: dict[str, Any]) -> dict[str, str]:
    """Connection name -> kind, from the catalog when the task carries one, else the defaults."""
    catalog = context.get("catalog") or {}
    known = {c["name"]: c.get("kind", "") for c in catalog.get("connections") or [] if c.get("name")}
    for kind, name in (context.get("default_connections") or {}).items():
        known.setdefault(name, kind)
    return known


def _columns_of(context: dict[str, Any], connection: Optional[str], table: Optional[str]) -> Optional[set[str]]:
    for conn in (context.get("catalog") or {}).get("connections") or []:
        if connection and conn.get("name") != connection:
            continue
        for t in conn.get("tables") or []:
            if t.get("name") == table and t.get("columns"):
                return {c["name"] for c in t["columns"]}
    return None


def _tables_of(context: dict[str, Any], connection: Optional[str]) -> Optional[set[str]]:
    for conn in (context.get("catalog") or {}).get("connections") or []:
        if conn.get("name") == connection and conn.get("tables") and not conn.get("error"):
            return {t["name"] for t in conn["tables"]}
    return None


def _grounding_errors(spec: Any, context: dict[str, Any]) -> list[str]:
    """Names the model must take from the tenant's data rather than invent."""
    known = _connections(context)
    errors: list[str] = []
    for side in ("source", "target"):
        end = getattr(spec, side)
        name, fitting = end.connection, sorted(n for n, k in known.items() if k == end.kind)
        if name is None or not known:
            continue
        if name not in known:
            listed = ", ".join(f"{n} ({k})" for n, k in sorted(known.items()))
            errors.append(f"spec.{side}.connection: {name!r} is not a connection of this tenant; use one of {listed}")
        elif known[name] and known[name] != end.kind:
            errors.append(f"spec.{side}.connection: {name!r} is a {known[name]} connection but the {side} is "
                          f"{end.kind}; use {' or '.join(fitting) or 'a ' + end.kind + ' connection'}")
    src = spec.source
    tables = _tables_of(context, src.connection) if src.table else None
    if tables is not None and src.table not in tables:
        errors.append(f"spec.source.table: {src.table!r} is not a table of {src.connection}; its tables: "
                      + ", ".join(sorted(tables)[:30]))
        return errors
    columns = _columns_of(context, src.connection, src.table) if src.table else None
    if columns is None or spec.joins:
        return errors  # joined columns are named alias.column; QA checks them against the joined tables
    used = [(f"spec.filters[{i}].column", f.column) for i, f in enumerate(spec.filters)]
    used += [(f"spec.cleaning[{i}].column", c.column) for i, c in enumerate(spec.cleaning) if c.column != "*"]
    used += [(f"spec.select[{i}]", c) for i, c in enumerate(spec.select)]
    if spec.aggregate:
        a = spec.aggregate
        used += [("spec.aggregate.time_column", a.time_column)] if a.time_column else []
        used += [(f"spec.aggregate.dimensions[{i}]", d) for i, d in enumerate(a.dimensions)]
        used += [(f"spec.aggregate.measures[{i}].column", m.column) for i, m in enumerate(a.measures) if m.column]
    if spec.incremental:
        used.append(("spec.incremental.cursor_column", spec.incremental.cursor_column))
    for path, name in used:
        if name not in columns:
            errors.append(f"{path}: {name!r} is not a column of {src.table}; its columns: "
                          + ", ".join(sorted(columns)))
    return errors


def review_plan(out: dict[str, Any], context: dict[str, Any]) -> Review:
    """Normalise a planner answer and list every way it breaks the contract."""
    from pydantic import ValidationError

    from services.domain.spec import PipelineSpec

    out = normalise_plan(out)
    outcome = out.get("outcome")
    if outcome not in OUTCOMES:
        return Review(out, [f"outcome: must be one of {', '.join(OUTCOMES)}, got {outcome!r}"])
    if outcome == "clarify":
        ok = isinstance(out.get("question"), str) and out["question"].strip()
        return Review(out, crosscheck_plan(out, None, context) if ok else
                      ["question: a clarification needs the question to ask"])
    if outcome == "refuse":
        ok = isinstance(out.get("reason"), str) and out["reason"].strip()
        return Review(out, [] if ok else ["reason: a refusal needs its reason"])
    if not isinstance(out.get("spec"), dict):
        return Review(out, ["spec: a plan needs the spec object"])
    spec = dict(out["spec"])
    defaults = context.get("default_connections") or {}
    for side in ("source", "target"):  # the tenant's default connection of that kind, as the builtin does
        end = spec.get(side)
        if isinstance(end, dict) and "connection" not in end and end.get("kind") in defaults:
            spec[side] = {**end, "connection": defaults[end["kind"]]}
    out["spec"] = spec
    try:
        model = PipelineSpec.model_validate(spec)
    except ValidationError as exc:
        return Review(out, _pydantic_errors(exc, "spec"))
    errors = _grounding_errors(model, context)
    # Valid and grounded is not yet right: the facts the request states must be the spec's (crosscheck.py).
    return Review(out, errors + [e for e in crosscheck_plan(out, model.model_dump(mode="json"), context)
                                 if e not in errors])


def review_sql(out: dict[str, Any], context: dict[str, Any]) -> Review:
    """SQL answers: strings or null where SQL goes, a read-only extract; dialects come from the spec."""
    out = dict(out)
    errors = []
    for name in ("extract_sql", "transform_sql", "target_ddl", "extract_sql_initial"):
        value = out.get(name)
        if value is not None and not isinstance(value, str):
            errors.append(f"{name}: must be SQL text or null, got {type(value).__name__}")
        elif isinstance(value, str) and not value.strip():
            out[name] = None
    for name in ("extract_sql", "extract_sql_initial", "transform_sql"):
        sql = out.get(name)
        if isinstance(sql, str) and (not _READ_ONLY.match(sql) or _WRITE_WORD.search(sql)):
            errors.append(f"{name}: must be one read-only SELECT statement")
    if isinstance(out.get("target_setup_sql"), str):
        out["target_setup_sql"] = [out["target_setup_sql"]]
    spec = context.get("spec") if isinstance(context.get("spec"), dict) else {}
    out["dialects"] = spec_dialects(spec, bool(out.get("transform_sql")))
    return Review(out, errors)


def spec_dialects(spec: dict[str, Any], has_transform: bool) -> dict[str, Optional[str]]:
    from services.domain.spec import DATABASE_KINDS

    def kind(side: str) -> Optional[str]:
        value = str((spec.get(side) or {}).get("kind") or "").lower()
        value = _ENGINE_ALIASES.get(value, value)
        return value if value in DATABASE_KINDS else None

    return {"extract": kind("source"), "transform": "duckdb" if has_transform else None, "target": kind("target")}


def review(task: str, out: dict[str, Any], context: dict[str, Any]) -> Review:
    if task == "plan":
        return review_plan(out, context)
    if task == "sql":
        return review_sql(out, context)
    return Review(out)


# ------------------------------------------------------------------------------------------ repair


def repair_messages(messages: list[dict[str, str]], answer_text: str, errors: list[str]) -> list[dict[str, str]]:
    """The conversation so far plus the model's rejected answer and every error with its path."""
    listing = "\n".join(f"- {e}" for e in errors)
    return [*messages, {"role": "assistant", "content": answer_text[:6000]},
            {"role": "user", "content": "That JSON was rejected by the validator:\n" + listing +
             "\nFix exactly these fields, keep everything else, and answer with the whole corrected JSON "
             "object only. Omit optional fields rather than writing null."}]


def repair_abandoned(task: str, out: dict[str, Any]) -> list[str]:
    """A repair round asks the model to fix its own plan; a question or a refusal instead means it could not
    (seen: "What is the column that sum needs?" about a column it had left out), so it is not the answer."""
    if task == "plan" and out.get("outcome") != "plan":
        return [f"outcome: fix the fields listed above and answer with the plan; a {out.get('outcome')} is not a fix"]
    return []


def rejection_text(errors: list[str]) -> str:
    fields = sorted({e.split(":", 1)[0] for e in errors})
    return "; ".join(errors)[:1500] + "\n" + _FIELD_LINE + ", ".join(fields)


def rejected_fields(message: str) -> list[str]:
    """The field paths :func:`rejection_text` put in a failure message (for the user's question)."""
    for line in reversed((message or "").splitlines()):
        if line.startswith(_FIELD_LINE):
            return [f for f in line[len(_FIELD_LINE):].split(", ") if f]
    return []


def schema_outline(schema: dict[str, Any], indent: int = 0) -> str:
    """A schema as a TypeScript-like outline: a third of the JSON's size, and what models read best.
    ``?`` marks an optional field (omit it rather than writing null)."""
    pad = "  " * indent
    if "anyOf" in schema:
        return " | ".join(schema_outline(o, indent) for o in schema["anyOf"])
    if "enum" in schema:
        return "|".join(f'"{v}"' for v in schema["enum"])
    if "const" in schema:
        return f'"{schema["const"]}"'
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(kind)
    if kind == "array":
        return f"[{schema_outline(schema.get('items', {}), indent)}]"
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", []))
        lines = []
        for name, sub in schema["properties"].items():
            note = f"  // {sub['description']}" if sub.get("description") else ""
            lines.append(f"{pad}  {name}{'' if name in required else '?'}: {schema_outline(sub, indent + 1)}{note}")
        return "{\n" + "\n".join(lines) + f"\n{pad}}}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"{{[name]: {schema_outline(extra, indent)}}}" if isinstance(extra, dict) else "object"
    return str(kind or "any")
