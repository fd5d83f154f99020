"""How run events and metrics become rows of the ClickHouse analytics tables (pure; no I/O).

Tables are those of infra/clickhouse/migrations/: 001 (pipeline_runs, run_batches, execution_logs) and
002 (stream_lag). Every row names all of its table's columns, so one INSERT per table fits any batch.
DateTime values are epoch seconds (ints): the driver then never guesses a timezone.
"""
from __future__ import annotations

from typing import Optional

from services.core.messages import Message

COLUMNS: dict[str, tuple[str, ...]] = {
    "pipeline_runs": ("ts", "tenant_id", "pipeline_id", "pipeline_version", "run_id", "status", "trigger_kind",
                      "started_at", "finished_at", "duration_ms", "rows_read", "rows_written", "rows_rejected",
                      "bytes_read", "batches", "error", "event_id", "trace_id"),
    "run_batches": ("ts", "tenant_id", "pipeline_id", "run_id", "batch_seq", "status", "rows_in", "rows_out",
                    "rows_rejected", "bytes", "extract_ms", "transform_ms", "load_ms", "duration_ms",
                    "cursor_value", "error", "trace_id"),
    "execution_logs": ("ts", "tenant_id", "pipeline_id", "run_id", "seq", "level", "component", "message",
                       "batch_seq", "trace_id", "span_id"),
    "stream_lag": ("ts", "tenant_id", "pipeline_id", "run_id", "topic", "lag", "loaded_total", "event_id",
                   "trace_id"),
    "audit_log": ("ts", "tenant_id", "event_id", "actor", "action", "resource_type", "resource_id", "pipeline_id",
                  "correlation_id", "causation_id", "outcome", "reason", "source_address", "request_id",
                  "recorder", "trace_id"),
}


def _u(value) -> int:
    """UInt64 columns: a negative or missing count is stored as 0 rather than failing the whole batch."""
    return max(0, int(value or 0))


def _common(msg: Message) -> dict:
    env = msg.envelope
    return {"ts": int(env["occurred_at"].timestamp()), "tenant_id": env["tenant_id"],
            "pipeline_id": env.get("pipeline_id") or "", "run_id": msg.payload["run_id"], "trace_id": ""}


def _run_row(msg: Message, status: str, **values) -> dict:
    base = _common(msg)
    p = msg.payload
    row = {**base, "pipeline_version": _u(p.get("version")), "status": status,
           "trigger_kind": p.get("trigger_kind") or "", "started_at": base["ts"],
           "finished_at": 0, "duration_ms": 0, "rows_read": 0, "rows_written": 0, "rows_rejected": 0,
           "bytes_read": 0, "batches": 0, "error": "", "event_id": msg.message_id}
    row.update(values)
    return row


def _run_started(msg: Message) -> dict:
    return _run_row(msg, "started")


def _run_succeeded(msg: Message) -> dict:
    p = msg.payload
    ts = int(msg.envelope["occurred_at"].timestamp())
    return _run_row(msg, "succeeded", started_at=max(0, ts - _u(p["duration_ms"]) // 1000), finished_at=ts,
                    duration_ms=_u(p["duration_ms"]), rows_read=_u(p["rows_read"]),
                    rows_written=_u(p["rows_written"]), bytes_read=_u(p["bytes"]), batches=_u(p["batches"]))


def _run_failed(msg: Message) -> dict:
    p = msg.payload
    final = p.get("final", True)
    ts = int(msg.envelope["occurred_at"].timestamp())
    return _run_row(msg, "failed" if final else "retrying", finished_at=ts if final else 0,
                    error=f"{p['error_class']}: {p['message']}")


def _run_cancelled(msg: Message) -> dict:
    ts = int(msg.envelope["occurred_at"].timestamp())
    return _run_row(msg, "cancelled", finished_at=ts, error=msg.payload.get("reason") or "")


def _batch_measured(msg: Message) -> dict:
    p = msg.payload
    timings = {k: _u(p.get(k)) for k in ("extract_ms", "transform_ms", "load_ms")}
    return {**_common(msg), "batch_seq": _u(p["batch_no"]), "status": "ok", "rows_in": _u(p["rows_in"]),
            "rows_out": _u(p["rows_out"]), "rows_rejected": 0, "bytes": _u(p["bytes"]), **timings,
            "duration_ms": sum(timings.values()), "cursor_value": p.get("cursor") or "", "error": ""}


def _run_logged(msg: Message) -> dict:
    p = msg.payload
    return {**_common(msg), "seq": _u(p["seq"]), "level": p["level"], "component": msg.envelope.get("actor") or "",
            "message": p["message"], "batch_seq": _u(p.get("batch_no")), "span_id": ""}


def _stream_lag(msg: Message) -> dict:
    p = msg.payload
    return {**_common(msg), "topic": p["topic"], "lag": int(p["lag"]), "loaded_total": _u(p.get("loaded_total")),
            "event_id": msg.message_id}


def _audit(msg: Message) -> dict:
    env, p = msg.envelope, msg.payload
    return {"ts": int(env["occurred_at"].timestamp()), "tenant_id": env["tenant_id"], "event_id": msg.message_id,
            "actor": env.get("actor") or "", "action": p["action"],
            "resource_type": "pipeline" if env.get("pipeline_id") else "", "resource_id": p.get("subject") or "",
            "pipeline_id": env.get("pipeline_id") or "", "correlation_id": env.get("correlation_id") or "",
            "causation_id": env.get("causation_id") or "", "outcome": p["outcome"], "reason": p.get("reason") or "",
            "source_address": p.get("source_address") or "", "request_id": p.get("request_id") or "",
            "recorder": p["recorder"], "trace_id": ""}


# BatchLoaded is not here: run_batches takes the richer BatchMeasured (timings) of the same batch.
MAPPERS = {
    "RunStarted": ("pipeline_runs", _run_started),
    "RunSucceeded": ("pipeline_runs", _run_succeeded),
    "RunFailed": ("pipeline_runs", _run_failed),
    "RunCancelled": ("pipeline_runs", _run_cancelled),
    "BatchMeasured": ("run_batches", _batch_measured),
    "RunLogged": ("execution_logs", _run_logged),
    "StreamLagMeasured": ("stream_lag", _stream_lag),
    "AuditRecorded": ("audit_log", _audit),
}


def row_for(msg: Message) -> Optional[tuple[str, dict]]:
    """(table, row) for a message the sink stores, None for the others."""
    mapping = MAPPERS.get(msg.short_name)
    if mapping is None:
        return None
    table, fn = mapping
    return table, fn(msg)
