"""The Redis read model: current state per pipeline, its event history, and the projector's offsets.

Keys (``ns`` is the topic prefix + ``rm:``, so deployments sharing a Redis never collide):
  {ns}pipeline:{id}          JSON state of one pipeline
  {ns}pipeline:{id}:events   list of JSON events, in log order
  {ns}tenant:{t}:pipelines   sorted set of pipeline ids by creation time
  {ns}offsets                hash "topic:partition" -> next offset to apply
  {ns}pipeline:{id}:live     pub/sub channel for live event streams (SSE)
  {ns}replaying              present while `aietl replay` rebuilds; the live projector waits
  {ns}run:{run_id}           JSON state of one run (status, attempt, totals, progress, error)
  {ns}run:{run_id}:events    list of JSON run events, in log order
  {ns}run:{run_id}:live      pub/sub channel for live run progress (SSE)
  {ns}pipeline:{id}:runs     sorted set of run ids by request time
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Optional

from services.core.messages import Message


def namespace(topic_prefix: str) -> str:
    return f"{topic_prefix}rm:"


class Keys:
    def __init__(self, ns: str):
        self.ns = ns
        self.offsets = f"{ns}offsets"
        self.replaying = f"{ns}replaying"

    def pipeline(self, pid: str) -> str:
        return f"{self.ns}pipeline:{pid}"

    def events(self, pid: str) -> str:
        return f"{self.ns}pipeline:{pid}:events"

    def live(self, pid: str) -> str:
        return f"{self.ns}pipeline:{pid}:live"

    def tenant_index(self, tenant: str) -> str:
        return f"{self.ns}tenant:{tenant}:pipelines"

    def run(self, run_id: str) -> str:
        return f"{self.ns}run:{run_id}"

    def run_events(self, run_id: str) -> str:
        return f"{self.ns}run:{run_id}:events"

    def run_live(self, run_id: str) -> str:
        return f"{self.ns}run:{run_id}:live"

    def pipeline_runs(self, pid: str) -> str:
        return f"{self.ns}pipeline:{pid}:runs"


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def event_view(msg: Message, partition: int, offset: int) -> dict:
    return {"type": msg.short_name, "partition": partition, "offset": offset,
            "envelope": _jsonable(msg.envelope), "payload": _jsonable(msg.payload)}


# How each event changes a pipeline's state. Unknown events only land in the history.
def _requested(state: dict, msg: Message) -> dict:
    return {**state, "pipeline_id": msg.pipeline_id, "tenant_id": msg.envelope["tenant_id"],
            "status": "requested", "description": msg.payload["description"],
            "name": msg.payload.get("name"), "labels": msg.payload.get("labels") or {},
            "created_at": _jsonable(msg.envelope["occurred_at"]), "revision": 1, "working": {},
            "versions": []}


def _rejected(state: dict, msg: Message) -> dict:
    return {**state, "last_rejection": {"command_id": msg.payload["command_id"],
                                        "error_code": msg.payload["error_code"],
                                        "reason": msg.payload["reason"]}}


def _stage(status: str, *fields: str, reset: bool = False):
    """A reducer that sets the status and copies payload fields into the working draft."""
    def reducer(state: dict, msg: Message) -> dict:
        working = {} if reset else dict(state.get("working") or {})
        working.update({f: _jsonable(msg.payload.get(f)) for f in fields})
        return {**state, "status": status, "revision": msg.payload.get("revision", state.get("revision")),
                "working": working}
    return reducer


def _reflected(state: dict, msg: Message) -> dict:
    new = _stage("repairing", "instructions")(state, msg)
    new["repair_round"] = msg.payload["round"]
    return new


def _draft(state: dict, msg: Message) -> dict:
    version = {"draft_version": msg.payload["draft_version"], "revision": msg.payload["revision"],
               "quality_score": msg.payload["quality_score"], "checks_passed": list(msg.payload["checks_passed"]),
               "passed_qa": msg.payload["passed_qa"], "completed_at": _jsonable(msg.envelope["occurred_at"]),
               "artifacts": dict(state.get("working") or {})}
    return {**state, "status": "draft_ready" if msg.payload["passed_qa"] else "draft_failed",
            "versions": list(state.get("versions") or []) + [version],
            "latest_version": msg.payload["draft_version"]}


REDUCERS = {
    "PipelineRequested": _requested,
    "CommandRejected": _rejected,
    "RevisionRequested": _stage("revising", "instructions", reset=True),
    "PlanProposed": _stage("planned", "spec_json", "understood", "confidence", "recalled_ids"),
    "ClarificationRequested": _stage("needs_clarification", "question", "missing"),
    "RequestRefused": _stage("refused", "reason"),
    "SqlProposed": _stage("sql_proposed", "extract_sql", "extract_sql_initial", "transform_sql", "target_ddl",
                          "target_setup_sql", "source_dialect", "target_dialect", "notes"),
    "TransformProposed": _stage("transform_proposed", "python_code"),
    "SchemaChecked": _stage("schema_checked", "source_columns_json", "target_columns_json", "pii_json", "issues"),
    "QaPassed": _stage("qa_passed", "checks_json", "findings", "dry_run_rows_in", "dry_run_rows_out"),
    "QaFailed": _stage("qa_failed", "checks_json", "findings", "dry_run_rows_in", "dry_run_rows_out"),
    "ReflectionIssued": _reflected,
    "DraftCompleted": _draft,
}


def reduce(state: dict, msg: Message) -> dict:
    fn = REDUCERS.get(msg.short_name)
    new = fn(state, msg) if fn else dict(state)
    if msg.envelope.get("aggregate_version") is not None:
        new["version"] = msg.envelope["aggregate_version"]
    new["updated_at"] = _jsonable(msg.envelope["occurred_at"])
    new["last_event"] = msg.short_name
    return new


def apply_event(redis_client, keys: Keys, msg: Message, topic: str, partition: int, offset: int) -> bool:
    """Apply one event and advance the partition's offset in one MULTI/EXEC. False if already applied."""
    field = f"{topic}:{partition}"
    stored = redis_client.hget(keys.offsets, field)
    if stored is not None and offset < int(stored):
        return False
    pid = msg.pipeline_id
    view = json.dumps(event_view(msg, partition, offset), sort_keys=True)
    pipe = redis_client.pipeline(transaction=True)
    if pid:
        raw = redis_client.get(keys.pipeline(pid))
        state = reduce(json.loads(raw) if raw else {}, msg)
        pipe.set(keys.pipeline(pid), json.dumps(state, sort_keys=True))
        pipe.rpush(keys.events(pid), view)
        if msg.short_name == "PipelineRequested":
            ts = msg.envelope["occurred_at"]
            pipe.zadd(keys.tenant_index(msg.envelope["tenant_id"]), {pid: ts.timestamp()})
    pipe.hset(keys.offsets, field, offset + 1)
    if pid:
        pipe.publish(keys.live(pid), view)
    pipe.execute()
    return True


def stored_positions(redis_client, keys: Keys, topic: str) -> dict[int, int]:
    out = {}
    for field, value in redis_client.hgetall(keys.offsets).items():
        t, _, p = field.decode().rpartition(":")
        if t == topic:
            out[int(p)] = int(value)
    return out


def wipe(redis_client, keys: Keys) -> int:
    n = 0
    for key in redis_client.scan_iter(match=f"{keys.ns}*", count=500):
        if key.decode() != keys.replaying:
            n += redis_client.delete(key)
    return n


def model_hash(redis_client, keys: Keys) -> str:
    """A digest of the whole read model (offsets excluded), for replay-equality checks."""
    h = hashlib.sha256()
    for key in sorted(redis_client.scan_iter(match=f"{keys.ns}*", count=500)):
        k = key.decode()
        if k in (keys.offsets, keys.replaying):
            continue
        kind = redis_client.type(key).decode()
        if kind == "string":
            val: object = redis_client.get(key).decode()
        elif kind == "list":
            val = [v.decode() for v in redis_client.lrange(key, 0, -1)]
        elif kind == "zset":
            val = [(m.decode(), s) for m, s in redis_client.zrange(key, 0, -1, withscores=True)]
        elif kind == "hash":
            val = sorted((f.decode(), v.decode()) for f, v in redis_client.hgetall(key).items())
        else:
            val = kind
        h.update(json.dumps([k, val], sort_keys=True).encode())
    return h.hexdigest()


def read_state(redis_client, keys: Keys, pid: str) -> Optional[dict]:
    raw = redis_client.get(keys.pipeline(pid))
    return json.loads(raw) if raw else None
