"""The Redis read model: current state per pipeline and per run, their event histories, and the
projector's offsets.

Keys (``ns`` is the topic prefix + ``rm:``, so deployments sharing a Redis never collide):
  {ns}pipeline:{id}          JSON state of one pipeline
  {ns}pipeline:{id}:events   list of JSON events, in log order
  {ns}tenant:{t}:pipelines   sorted set of pipeline ids by creation time
  {ns}offsets                hash "topic:partition" -> next offset to apply
  {ns}pipeline:{id}:live     pub/sub channel for live event streams (SSE)
  {ns}replaying              present while `aietl replay` rebuilds; the live projector waits
  {ns}run:{run_id}           JSON state of one run (status, attempt, totals, progress, error)
  {ns}run:{run_id}:events    list of JSON run events, ordered by (occurred_at, topic, offset)
  {ns}run:{run_id}:live      pub/sub channel for live run progress (SSE)
  {ns}pipeline:{id}:runs     sorted set of run ids by request time (start time for unrequested runs)

The model is fed by two topics, ``pipelines.events.v1`` and ``runs.events.v1``, whose relative order is
not guaranteed (the projector may read either one ahead of the other). Everything a run event touches is
therefore folded order-tolerantly: run status only moves up a rank, request fields merge, the run's
event list is kept sorted rather than appended, and ``last_run`` is derived from the run index. Any
interleaving of the two logs thus gives the same model, which is what makes replay byte-for-byte equal.
"""
from __future__ import annotations

import bisect
import hashlib
import json
from datetime import datetime
from typing import Optional

from redis.exceptions import WatchError

from services.core.messages import Message

RUNS_NAMESPACE = "aietl.runs."  # messages of runs.events.v1: they never enter a pipeline's history
RUN_EVENTS_CAP = 10_000  # a long-lived streaming run keeps only its latest events (its totals are in the state)
_MAX_TRIES = 50  # optimistic-lock retries; contention is two agents touching one pipeline at once


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


def _when(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _iso(msg: Message) -> str:
    return _jsonable(msg.envelope["occurred_at"])


def event_view(msg: Message, partition: int, offset: int) -> dict:
    return {"type": msg.short_name, "partition": partition, "offset": offset,
            "envelope": _jsonable(msg.envelope), "payload": _jsonable(msg.payload)}


# -- pipeline state ----------------------------------------------------------------------------------
# How each event changes a pipeline's state. Unknown events only land in the history.
def _requested(state: dict, msg: Message) -> dict:
    return {**state, "pipeline_id": msg.pipeline_id, "tenant_id": msg.envelope["tenant_id"],
            "status": "requested", "description": msg.payload["description"],
            "name": msg.payload.get("name"), "labels": msg.payload.get("labels") or {},
            "created_at": _iso(msg), "revision": 1, "working": {},
            "versions": [], "lifecycle": "draft", "deployed_version": None, "deployed": None}


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
               "passed_qa": msg.payload["passed_qa"], "completed_at": _iso(msg),
               "artifacts": dict(state.get("working") or {})}
    return {**state, "status": "draft_ready" if msg.payload["passed_qa"] else "draft_failed",
            "versions": list(state.get("versions") or []) + [version],
            "latest_version": msg.payload["draft_version"]}


def _deployed_spec(artifacts_json: str) -> dict:
    """The spec inside a deployed draft; a missing or unparsable one reads as empty (manual, batch)."""
    try:
        artifacts = json.loads(artifacts_json or "{}")
        raw = artifacts.get("spec_json") or "{}"
        spec = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, AttributeError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _made_current(state: dict, msg: Message) -> dict:
    """PipelineDeployed / PipelineRolledBack: a version becomes current. Like services/domain/pipeline.py,
    only a draft becomes deployed; a paused pipeline stays paused (and a deleted one deleted)."""
    spec = _deployed_spec(msg.payload.get("artifacts_json"))
    lifecycle = state.get("lifecycle") or "draft"
    deployed = {"version": msg.payload["version"], "at": _iso(msg),
                "trigger": spec.get("trigger") or {"kind": "manual"}, "schedule": spec.get("schedule") or {},
                "streaming": bool((spec.get("streaming") or {}).get("enabled"))}
    return {**state, "lifecycle": "deployed" if lifecycle == "draft" else lifecycle,
            "deployed_version": msg.payload["version"], "deployed": deployed}


def _lifecycle(value: str):
    def reducer(state: dict, msg: Message) -> dict:
        return {**state, "lifecycle": value}
    return reducer


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
    "DraftingFailed": _stage("draft_failed", "stage", "reason"),
    "PipelineDeployed": _made_current,
    "PipelineRolledBack": _made_current,
    "PipelinePaused": _lifecycle("paused"),
    "PipelineResumed": _lifecycle("deployed"),
    "PipelineDeleted": _lifecycle("deleted"),
}


def reduce(state: dict, msg: Message) -> dict:
    fn = REDUCERS.get(msg.short_name)
    new = fn(state, msg) if fn else dict(state)
    if msg.envelope.get("aggregate_version") is not None:
        new["version"] = msg.envelope["aggregate_version"]
    new["updated_at"] = _iso(msg)
    new["last_event"] = msg.short_name
    return new


# -- run state ---------------------------------------------------------------------------------------
# A status only replaces one of the same or a lower rank: a RunRequested read after its run's RunStarted
# (the topics are read independently) must not put the run back to "queued". Within runs.events.v1 the
# log order holds, so running <-> retrying and a later terminal event still win.
STATUS_RANK = {None: -1, "queued": 0, "running": 1, "retrying": 1, "succeeded": 2, "failed": 2, "cancelled": 2}


def new_run(msg: Message) -> dict:
    """Every field from the start, so the stored JSON does not depend on which event came first."""
    return {"run_id": msg.payload["run_id"], "pipeline_id": msg.pipeline_id,
            "tenant_id": msg.envelope["tenant_id"], "version": None, "trigger_kind": None, "params": {},
            "slot": None, "status": None, "attempt": 0, "requested_at": None, "started_at": None,
            "finished_at": None, "updated_at": None, "rows_read": 0, "rows_written": 0, "bytes": 0,
            "batches": 0, "batch_ranges": [], "cursor_from": None, "cursor": None, "high_water_mark": None,
            "duration_ms": None, "error": None, "last_error": None, "cancel_requested": False,
            "cancel_reason": None}


def _advance(state: dict, status: str) -> None:
    if STATUS_RANK[status] >= STATUS_RANK[state.get("status")]:
        state["status"] = status


def _params(params_json: Optional[str]) -> dict:
    try:
        value = json.loads(params_json or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _run_requested(state: dict, msg: Message) -> None:
    p = msg.payload
    # RunStarted carries the version actually run; the request's only fills a gap.
    if state["version"] is None:
        state["version"] = p["version"]
    state.update(trigger_kind=p["trigger_kind"], params=_params(p.get("params_json")), slot=p.get("slot"),
                 requested_at=_iso(msg))
    _advance(state, "queued")


def _run_cancel_requested(state: dict, msg: Message) -> None:
    state["cancel_requested"] = True
    # RunCancelled's reason is the authoritative one, whichever of the two is read first.
    if state["cancel_reason"] is None:
        state["cancel_reason"] = msg.payload.get("reason")


def _run_started(state: dict, msg: Message) -> None:
    p = msg.payload
    # Streaming pipelines start long-lived runs without a RunRequested; a later RunRequested overrides.
    if state["trigger_kind"] is None:
        state["trigger_kind"] = "stream"
    if state["started_at"] is None:
        state["started_at"] = _iso(msg)
    state.update(version=p["version"], attempt=p.get("attempt", 1), cursor_from=p.get("cursor_from"))
    _advance(state, "running")


def _add_batch(ranges: list, n: int) -> list:
    """Insert batch number n into sorted, disjoint [lo, hi] ranges: a whole run's batches usually stay
    one range, so counting distinct batch numbers costs O(1) space even for a long streaming run."""
    out = sorted([list(r) for r in ranges] + [[n, n]])
    merged: list = []
    for lo, hi in out:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def _batch_loaded(state: dict, msg: Message) -> None:
    p = msg.payload
    state["batch_ranges"] = _add_batch(state["batch_ranges"], p["batch_no"])
    state["batches"] = sum(hi - lo + 1 for lo, hi in state["batch_ranges"])
    state["rows_read"] += p["rows"]
    state["rows_written"] += p.get("rows_written", 0)
    state["bytes"] += p["bytes"]
    if p.get("cursor") is not None:
        state["cursor"] = p["cursor"]


def _run_succeeded(state: dict, msg: Message) -> None:
    p = msg.payload
    state.update(rows_read=p["rows_read"], rows_written=p["rows_written"], bytes=p["bytes"],
                 batches=p["batches"], high_water_mark=p.get("high_water_mark"), duration_ms=p["duration_ms"],
                 finished_at=_iso(msg))
    if state.get("error"):  # a retried run that succeeded: no current error, the earlier one stays visible
        state["last_error"], state["error"] = state["error"], None
    _advance(state, "succeeded")


def _run_failed(state: dict, msg: Message) -> None:
    p = msg.payload
    state["attempt"] = p.get("attempt", state["attempt"])
    state["error"] = {"error_class": p["error_class"], "message": p["message"], "retryable": p["retryable"]}
    if p.get("final", True):
        state["finished_at"] = _iso(msg)
        _advance(state, "failed")
    else:
        _advance(state, "retrying")


def _run_cancelled(state: dict, msg: Message) -> None:
    state.update(finished_at=_iso(msg), cancel_reason=msg.payload.get("reason"))
    _advance(state, "cancelled")


RUN_REDUCERS = {
    "RunRequested": _run_requested,
    "RunCancelRequested": _run_cancel_requested,
    "RunStarted": _run_started,
    "BatchLoaded": _batch_loaded,
    "RunSucceeded": _run_succeeded,
    "RunFailed": _run_failed,
    "RunCancelled": _run_cancelled,
}


def reduce_run(state: Optional[dict], msg: Message) -> dict:
    new = json.loads(json.dumps(state)) if state else new_run(msg)  # a deep copy: reducers mutate
    RUN_REDUCERS[msg.short_name](new, msg)
    if new["updated_at"] is None or _when(_iso(msg)) > _when(new["updated_at"]):
        new["updated_at"] = _iso(msg)  # the latest event time, not the last one applied: order-free
    return new


def run_index_score(state: dict) -> Optional[float]:
    """A run's place in its pipeline's index: request time, or first start for unrequested runs."""
    when = state.get("requested_at") or state.get("started_at")
    return _when(when).timestamp() if when else None


def _run_event_order(view: dict) -> tuple:
    """Total order of a run's events across both topics: time, then pipelines before runs topic, then offset
    (one run's events share a partition of each topic, since both are keyed by pipeline id)."""
    topic_rank = 1 if view["envelope"]["message_type"].startswith(RUNS_NAMESPACE) else 0
    return _when(view["envelope"]["occurred_at"]).timestamp(), topic_rank, view["offset"]


# -- applying one event ------------------------------------------------------------------------------
class _Plan:
    """Writes decided while reading under WATCH, replayed into one MULTI/EXEC; publishes go last."""

    def __init__(self) -> None:
        self.writes: list = []
        self.publishes: list = []

    def write(self, method: str, *args, **kwargs) -> None:
        self.writes.append((method, args, kwargs))

    def publish(self, channel: str, text: str) -> None:
        self.publishes.append((channel, text))

    def into(self, pipe) -> None:
        for method, args, kwargs in self.writes:
            getattr(pipe, method)(*args, **kwargs)
        for channel, text in self.publishes:
            pipe.publish(channel, text)


def _sorted_position(pipe, key: str, order: tuple) -> tuple[int, int, Optional[bytes]]:
    """(position, length, element now at that position) for a new run event, scanning from the tail in
    growing chunks: nearly every event sorts last, so this usually reads a handful of entries."""
    n = pipe.llen(key)
    end, chunk, following = n, 16, None
    while end > 0:
        start = max(0, end - chunk)
        items = pipe.lrange(key, start, end - 1)
        at = bisect.bisect_right([_run_event_order(json.loads(i)) for i in items], order)
        if at > 0:
            return start + at, n, items[at] if at < len(items) else following
        following = items[0]
        end, chunk = start, chunk * 2
    return 0, n, following


def _insert_sorted(pipe, key: str, text: str, order: tuple, plan: _Plan) -> None:
    pos, n, pivot = _sorted_position(pipe, key, order)
    if pos == n:
        plan.write("rpush", key, text)
    elif pos == 0:
        plan.write("lpush", key, text)
    else:
        plan.write("linsert", key, "BEFORE", pivot, text)  # entries are unique: each has its message id
    if n + 1 > RUN_EVENTS_CAP:
        plan.write("ltrim", key, -RUN_EVENTS_CAP, -1)  # drops the earliest, whatever the arrival order


def _project_run(pipe, keys: Keys, msg: Message, text: str, view: dict, plan: _Plan) -> tuple[dict, Optional[float]]:
    run_id = msg.payload["run_id"]
    raw = pipe.get(keys.run(run_id))
    state = reduce_run(json.loads(raw) if raw else None, msg)
    plan.write("set", keys.run(run_id), json.dumps(state, sort_keys=True))
    _insert_sorted(pipe, keys.run_events(run_id), text, _run_event_order(view), plan)
    plan.publish(keys.run_live(run_id), text)
    score = run_index_score(state) if msg.short_name in ("RunRequested", "RunStarted") else None
    if score is not None and msg.pipeline_id:
        plan.write("zadd", keys.pipeline_runs(msg.pipeline_id), {run_id: score})
    return state, score


def _last_run(pipe, keys: Keys, pid: str, run_id: Optional[str], run_state: Optional[dict],
              score: Optional[float]) -> Optional[dict]:
    """The pipeline's latest run (highest index score, ties by id as Redis orders them) and its status.

    Derived from the index and the run states rather than from the event just applied, so it comes out
    the same whichever topic was read first. The top two suffice: at most one of them is the run whose
    score this event changes."""
    top = [(m.decode(), s) for m, s in pipe.zrevrange(keys.pipeline_runs(pid), 0, 1, withscores=True)]
    if run_id and score is not None:
        top = [(m, s) for m, s in top if m != run_id] + [(run_id, score)]
    if not top:
        return None
    best = max(top, key=lambda ms: (ms[1], ms[0]))[0]
    if best == run_id and run_state is not None:
        return {"run_id": best, "status": run_state["status"]}
    pipe.watch(keys.run(best))
    raw = pipe.get(keys.run(best))
    return {"run_id": best, "status": json.loads(raw)["status"] if raw else None}


def _project_pipeline(pipe, keys: Keys, msg: Message, text: str, plan: _Plan, run_id: Optional[str],
                      run_state: Optional[dict], score: Optional[float]) -> None:
    pid = msg.pipeline_id
    raw = pipe.get(keys.pipeline(pid))
    old = json.loads(raw) if raw else None
    in_history = not msg.name.startswith(RUNS_NAMESPACE)
    if not in_history and old is None:
        return  # no pipeline to hang last_run on yet; its PipelineRequested will derive it
    state = reduce(old or {}, msg) if in_history else dict(old)
    state["last_run"] = _last_run(pipe, keys, pid, run_id, run_state, score)
    if in_history or state != old:
        plan.write("set", keys.pipeline(pid), json.dumps(state, sort_keys=True))
    if in_history:
        plan.write("rpush", keys.events(pid), text)
        if msg.short_name == "PipelineRequested":
            plan.write("zadd", keys.tenant_index(msg.envelope["tenant_id"]),
                       {pid: msg.envelope["occurred_at"].timestamp()})
        plan.publish(keys.live(pid), text)


def _watched(keys: Keys, pid: Optional[str], run_id: Optional[str]) -> list[str]:
    out = []
    if pid:
        out += [keys.pipeline(pid), keys.pipeline_runs(pid)]
    if run_id:
        out += [keys.run(run_id), keys.run_events(run_id)]
    return out


def _run_id(msg: Message) -> Optional[str]:
    return msg.payload.get("run_id") if msg.short_name in RUN_REDUCERS else None


def _plan(pipe, keys: Keys, msg: Message, view: dict, text: str) -> _Plan:
    """Read what the event touches (under WATCH) and decide the writes."""
    pid, run_id = msg.pipeline_id, _run_id(msg)
    watched = _watched(keys, pid, run_id)
    if watched:
        pipe.watch(*watched)
    plan = _Plan()
    run_state = score = None
    if run_id:
        run_state, score = _project_run(pipe, keys, msg, text, view, plan)
    if pid:
        _project_pipeline(pipe, keys, msg, text, plan, run_id, run_state, score)
    return plan


def apply_event(redis_client, keys: Keys, msg: Message, topic: str, partition: int, offset: int) -> bool:
    """Apply one event and advance the partition's offset in one MULTI/EXEC. False if already applied.

    State is read under WATCH and written in the transaction: the two topics' agents (or two projector
    processes during a rebalance) may touch the same pipeline or run at once, and a lost update would
    make the model depend on timing."""
    field = f"{topic}:{partition}"
    stored = redis_client.hget(keys.offsets, field)
    if stored is not None and offset < int(stored):
        return False
    view = event_view(msg, partition, offset)
    text = json.dumps(view, sort_keys=True)
    for _ in range(_MAX_TRIES):
        with redis_client.pipeline(transaction=True) as pipe:
            try:
                plan = _plan(pipe, keys, msg, view, text)
                pipe.multi()
                plan.into(pipe)
                pipe.hset(keys.offsets, field, offset + 1)
                pipe.execute()
                return True
            except WatchError:
                continue
    raise RuntimeError(f"could not apply {msg.short_name} {msg.message_id}: contention on its keys")


def skip_event(redis_client, keys: Keys, topic: str, partition: int, offset: int) -> None:
    """Advance past an event that cannot be projected (poison), so catch-up and replay do not stop on it."""
    field = f"{topic}:{partition}"
    stored = redis_client.hget(keys.offsets, field)
    if stored is None or int(stored) <= offset:
        redis_client.hset(keys.offsets, field, offset + 1)


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
        if key.decode() != keys.replaying and not _gateway_limit(keys, key.decode()):
            n += redis_client.delete(key)
    return n


def _gateway_limit(keys: Keys, key: str) -> bool:
    """The gateway's rate-limit and stream-slot counters share the namespace but are no part of the model."""
    return key.startswith(f"{keys.ns}limit:")


def model_hash(redis_client, keys: Keys) -> str:
    """A digest of the whole read model (offsets excluded), for replay-equality checks. Keys are hashed
    without the namespace, so two namespaces holding the same model hash the same."""
    h = hashlib.sha256()
    for key in sorted(redis_client.scan_iter(match=f"{keys.ns}*", count=500)):
        k = key.decode()
        if k in (keys.offsets, keys.replaying) or _gateway_limit(keys, k):
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
        h.update(json.dumps([k[len(keys.ns):], val], sort_keys=True).encode())
    return h.hexdigest()


def read_state(redis_client, keys: Keys, pid: str) -> Optional[dict]:
    raw = redis_client.get(keys.pipeline(pid))
    return json.loads(raw) if raw else None


def read_run(redis_client, keys: Keys, run_id: str) -> Optional[dict]:
    raw = redis_client.get(keys.run(run_id))
    return json.loads(raw) if raw else None
