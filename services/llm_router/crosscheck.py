"""A second opinion on a model's plan: the facts the request states, read offline, must be in the spec.

A small model answers valid JSON that plans other data than asked (seen: the target ``orders`` for
"into analytics.orders", one of three cleaning steps left out). The schema and the catalog cannot see
that; the request can. Two readings of the request, both deterministic and cheap (milliseconds):

* **anchors**: every ``schema.table`` and every file name the request writes literally must be one of the
  spec's endpoints (source, target, joins, topics);
* **the offline reading** (services.understanding, the builtin's grammar grounded in the same catalog):
  when it reads the request completely (a plan, not a question), each fact it found (endpoints, filters,
  aggregate, ordering and limit, renames, cleaning, schedule, mode and keys, cursor, streaming, PII) must
  be the model's too, and a question from the model about a request it read completely is not an answer.

Each difference is one ``path: message`` error, phrased as the fix, so the router's repair round can send
it back; an answer still differing after the repairs is rejected and the next provider is tried. When the
offline reading asks a question, only the anchors are checked: the model may know better than the grammar.
"""
from __future__ import annotations

import re
from typing import Any, Optional

_FILE = re.compile(r"(?<![\w/.-])([\w-]+(?:/[\w.-]+)*\.(?:csv|tsv|jsonl|ndjson|json|parquet|xml))\b", re.I)
_QUALIFIED = re.compile(r"(?<![\w@./-])([a-z_][a-z0-9_]+\.[a-z_][a-z0-9_]+)(?![\w@/-]|\.\w)", re.I)


def anchors(text: str) -> list[str]:
    """The table, topic and file names the request writes out (lower-cased, in order)."""
    files = [m.group(1).lower() for m in _FILE.finditer(text or "")]
    names = [m.group(1).lower() for m in _QUALIFIED.finditer(text or "")]
    stems = {f.rsplit("/", 1)[-1] for f in files}
    return list(dict.fromkeys(files + [n for n in names if n not in stems]))


def _endpoint_names(spec: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for side in ("source", "target"):
        end = spec.get(side) or {}
        for key in ("table", "path", "topic"):
            if end.get(key):
                value = str(end[key]).lower().strip('"`')
                out |= {value, value.rsplit("/", 1)[-1]}
    out |= {str(j.get("table", "")).lower() for j in spec.get("joins") or []}
    if (spec.get("trigger") or {}).get("topic"):
        out.add(str(spec["trigger"]["topic"]).lower())
    return out


def anchor_errors(spec: dict[str, Any], text: str) -> list[str]:
    have = _endpoint_names(spec)
    return [f"spec: the request names {name!r}; use it as the source, the target or a join table, exactly as "
            "written" for name in anchors(text) if name not in have]


# ------------------------------------------------------------------------------ the offline reading


def offline_reading(context: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The builtin grammar's answer for the task's request, with the same catalog and answers."""
    from services.understanding import compile_request

    if not context.get("text"):
        return None
    try:
        return compile_request(context["text"], default_connections=context.get("default_connections"),
                               catalog=context.get("catalog"), answers=context.get("answers"))
    except Exception:  # noqa: BLE001 - a second opinion that fails is no opinion, never a rejection
        return None


def _value(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return tuple(sorted((_value(x) for x in v), key=repr))
    text = str(v).strip()
    try:
        return float(text)
    except ValueError:
        return text.lower()


def _col(name: Any) -> str:
    return str(name or "").lower().strip('"`').rsplit(".", 1)[-1]


def facts(spec: dict[str, Any]) -> dict[str, Any]:
    """The facts of a spec that change which rows land where, in comparable form (``spec.model_dump()``)."""
    src, dst = spec.get("source") or {}, spec.get("target") or {}
    agg = spec.get("aggregate") or {}
    out: dict[str, Any] = {
        "source.kind": src.get("kind"), "target.kind": dst.get("kind"),
        "target.load_mode": dst.get("load_mode") or "append",
        "target.keys": tuple(sorted(_col(k) for k in dst.get("keys") or [])),
        "filters": {(_col(f["column"]), f["op"], _value(f.get("value"))) for f in spec.get("filters") or []},
        "joins": {(str(j["table"]).lower(), tuple(_col(c) for c in j.get("on") or [])) for j in spec.get("joins") or []},
        "select": {_col(c) for c in spec.get("select") or []},
        "rename": {(_col(k), str(v).lower()) for k, v in (spec.get("rename") or {}).items()},
        "order_by": tuple((_col(o["column"]), bool(o.get("descending"))) for o in spec.get("order_by") or []),
        "limit": spec.get("limit"),
        "cleaning": {(c["op"], _col(c["column"]), c.get("value")) for c in spec.get("cleaning") or []},
        "aggregate.period": agg.get("period"),
        "aggregate.dimensions": {_col(d) for d in agg.get("dimensions") or []},
        "aggregate.measures": {(m["fn"], _col(m.get("column")) or "*") for m in agg.get("measures") or []},
        "incremental.cursor_column": _col((spec.get("incremental") or {}).get("cursor_column")) or None,
        "schedule.cron": " ".join(str((spec.get("schedule") or {}).get("cron") or "").split()) or None,
        "trigger.kind": (spec.get("trigger") or {}).get("kind") or "manual",
        "trigger.topic": (spec.get("trigger") or {}).get("topic"),
        "streaming.enabled": bool((spec.get("streaming") or {}).get("enabled")),
        "pii": {(p["action"], p["column"].strip("*").lower()) for p in spec.get("pii") or []},
    }
    for side, end in (("source", src), ("target", dst)):
        for key in ("table", "path", "topic"):
            if end.get(key):
                out[f"{side}.{key}"] = str(end[key]).lower().strip('"`')
    if dst.get("kind") == "file":
        out["target.format"] = dst.get("format") or str(dst.get("path") or "").rsplit(".", 1)[-1].lower()
    if out["streaming.enabled"]:
        stream = spec.get("streaming") or {}
        out["streaming.max_batch_rows"] = stream.get("max_batch_rows")
        out["streaming.max_batch_seconds"] = float(stream.get("max_batch_seconds") or 0)
    if agg:
        out["aggregate.time_column"] = _col(agg.get("time_column")) or None
    return out


def _show(value: Any) -> str:
    if isinstance(value, (set, frozenset)):
        return ", ".join(sorted(map(_show, value))) or "none"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_show, value)) + ")"
    return repr(value)


def disagreements(model: dict[str, Any], reading: dict[str, Any]) -> list[str]:
    """``path: fix`` for each fact of the offline reading the model's spec states otherwise."""
    want, got = facts(reading), facts(model)
    errors = []
    for path, expected in want.items():
        actual = got.get(path)
        if actual == expected:
            continue
        if isinstance(expected, set):
            missing, extra = expected - (actual or set()), (actual or set()) - expected
            parts = ([f"the request asks for {_show(missing)}"] if missing else []) + \
                    ([f"{_show(extra)} is not in the request"] if extra else [])
            errors.append(f"spec.{path}: " + "; ".join(parts))
        else:
            errors.append(f"spec.{path}: the request says {_show(expected)}, the plan has {_show(actual)}")
    return errors


def crosscheck_plan(out: dict[str, Any], spec: Optional[dict[str, Any]], context: dict[str, Any]) -> list[str]:
    """Errors for a plan (``spec``: the validated spec dumped) or a question (``spec`` None)."""
    reading = offline_reading(context)
    complete = reading is not None and reading.get("outcome") == "plan"
    if spec is None:
        if out.get("outcome") == "clarify" and complete:
            return ["outcome: the request names everything a plan needs (source, target and what to load); "
                    "answer with the plan, not a question"]
        return []
    errors = anchor_errors(spec, context.get("text") or "")
    if complete:
        from services.domain.spec import PipelineSpec

        errors += disagreements(spec, PipelineSpec.model_validate(reading["spec"]).model_dump(mode="json"))
    return list(dict.fromkeys(errors))
