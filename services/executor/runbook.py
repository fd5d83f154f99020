"""The executor's memory, rebuilt from the logs: what was asked (pipelines.events.v1) and what it did
(runs.events.v1, of which it is the only writer).

Nothing about runs is kept anywhere else, so after a SIGKILL the executor reads both topics to their end
and knows exactly which runs are unfinished, which of their batches already landed, where each run's
cursor started and the high-water mark of each pipeline's last successful run.

A record that does not apply is skipped, never folded half-way: on ``pipelines.events.v1`` the same
PipelineLog check every reader of that log makes (services.domain.events), then the fold's own (a deployed
draft that is not JSON); the caller dead-letters it (services.core.dlq).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from services.core.messages import Message
from services.domain.deployments import Deployments
from services.domain.events import PipelineLog

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class RunRecord:
    run_id: str
    pipeline_id: str
    tenant_id: str
    version: int
    trigger_kind: str = "manual"
    params: dict = field(default_factory=dict)
    seq: int = 0                      # order of the request, for a fair queue after a restart
    status: str = "queued"            # queued | running | retrying | succeeded | failed | cancelled
    attempts: int = 0                 # RunStarted events so far
    cursor_from: Optional[str] = None
    started: bool = False             # cursor_from is fixed once the first attempt started
    batches: dict = field(default_factory=dict)  # batch_no -> rows written, as recorded by BatchLoaded
    cancel_requested: bool = False
    cancel_reason: str = ""

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def rows_written(self) -> int:
        return sum(self.batches.values())


class RunBook:
    """Pure fold of both logs. Feed records once each (``observe`` dedupes by topic/partition/offset)."""

    def __init__(self, gated_topic: Optional[str] = None) -> None:
        self._gated_topic = gated_topic  # the (prefixed) pipelines log, checked by PipelineLog
        self._gate = PipelineLog()
        self.deployments = Deployments()
        self.runs: dict[str, RunRecord] = {}
        self.artifacts: dict[tuple[str, int], dict] = {}  # (pipeline, version) -> deployed draft
        self.high_water: dict[str, Optional[str]] = {}    # pipeline -> last successful run's mark
        self.streams: dict[str, str] = {}                 # pipeline -> its open streaming run id
        self._positions: dict[tuple[str, int], int] = {}
        self._applied: set[str] = set()  # message ids: our own events are applied when sent and read back later
        self._seq = 0

    def observe(self, topic: str, partition: int, offset: int, msg: Message) -> bool:
        """Fold one record; False if folded before. Raises (ValueError & co.) for one that does not apply,
        which is then skipped: its position has moved on and nothing of it was folded."""
        if not self.skip(topic, partition, offset):
            return False
        if topic == self._gated_topic:
            self._gate.accept(msg)
        self.apply(msg)
        return True

    def skip(self, topic: str, partition: int, offset: int) -> bool:
        """Move past a record (one that cannot even be decoded); False if it was behind the fold."""
        pos = (topic, partition)
        if offset < self._positions.get(pos, 0):
            return False
        self._positions[pos] = offset + 1
        return True

    def positions(self, topic: str) -> dict[int, int]:
        return {p: o for (t, p), o in self._positions.items() if t == topic}

    def apply(self, msg: Message) -> None:
        if msg.message_id in self._applied:
            return
        self._applied.add(msg.message_id)
        fn = getattr(self, f"_on_{msg.short_name}", None)
        if fn:
            fn(msg)

    # -- pipelines.events.v1 -------------------------------------------------------------------------
    def _deployed(self, msg: Message) -> None:
        artifacts = json.loads(msg.payload["artifacts_json"])  # first: a draft that is not JSON changes nothing
        if not isinstance(artifacts, dict):
            raise ValueError("artifacts_json is not a JSON object")
        self.deployments.observe(msg)
        self.artifacts[(msg.pipeline_id, msg.payload["version"])] = artifacts

    _on_PipelineDeployed = _deployed
    _on_PipelineRolledBack = _deployed

    def _lifecycle(self, msg: Message) -> None:
        self.deployments.observe(msg)

    _on_PipelinePaused = _lifecycle
    _on_PipelineResumed = _lifecycle
    _on_PipelineDeleted = _lifecycle

    def _on_RunRequested(self, msg: Message) -> None:
        p = msg.payload
        run = self.runs.get(p["run_id"])
        if run is None:
            self._seq += 1
            self.runs[p["run_id"]] = RunRecord(
                run_id=p["run_id"], pipeline_id=msg.pipeline_id, tenant_id=msg.envelope["tenant_id"],
                version=p["version"], trigger_kind=p["trigger_kind"], params=json.loads(p.get("params_json") or "{}"),
                seq=self._seq)

    def _on_RunCancelRequested(self, msg: Message) -> None:
        run = self.runs.get(msg.payload["run_id"])
        if run:
            run.cancel_requested, run.cancel_reason = True, msg.payload.get("reason") or "cancelled"

    # -- runs.events.v1 (our own) --------------------------------------------------------------------
    def _run(self, msg: Message) -> RunRecord:
        rid = msg.payload["run_id"]
        if rid not in self.runs:  # a streaming run has no RunRequested
            self._seq += 1
            self.runs[rid] = RunRecord(run_id=rid, pipeline_id=msg.pipeline_id, tenant_id=msg.envelope["tenant_id"],
                                       version=msg.payload.get("version", 0), trigger_kind="stream", seq=self._seq)
        return self.runs[rid]

    def _on_RunStarted(self, msg: Message) -> None:
        run = self._run(msg)
        run.attempts = max(run.attempts, msg.payload.get("attempt", 1))
        if not run.started:
            run.cursor_from, run.started = msg.payload.get("cursor_from"), True
        run.status = "running"
        if run.trigger_kind == "stream":
            self.streams[run.pipeline_id] = run.run_id

    def _on_BatchLoaded(self, msg: Message) -> None:
        run = self._run(msg)
        run.batches.setdefault(msg.payload["batch_no"], msg.payload.get("rows_written", 0))

    def _on_RunSucceeded(self, msg: Message) -> None:
        run = self._run(msg)
        run.status = "succeeded"
        if run.trigger_kind != "stream":
            self.high_water[run.pipeline_id] = msg.payload.get("high_water_mark")
        self._close_stream(run)

    def _on_RunFailed(self, msg: Message) -> None:
        run = self._run(msg)
        run.status = "failed" if msg.payload.get("final", True) else "retrying"
        if run.finished:
            self._close_stream(run)

    def _on_RunCancelled(self, msg: Message) -> None:
        run = self._run(msg)
        run.status = "cancelled"
        self._close_stream(run)

    def _close_stream(self, run: RunRecord) -> None:
        if self.streams.get(run.pipeline_id) == run.run_id:
            del self.streams[run.pipeline_id]

    # -- questions ---------------------------------------------------------------------------------------
    def unfinished(self) -> list[RunRecord]:
        """Requested batch runs not yet finished, in request order (streams are restarted separately)."""
        return sorted((r for r in self.runs.values() if not r.finished and r.trigger_kind != "stream"),
                      key=lambda r: r.seq)

    def cursor_for(self, run: RunRecord) -> Optional[str]:
        """A resumed run keeps the cursor its first attempt started from, so it re-reads the same rows."""
        return run.cursor_from if run.started else self.high_water.get(run.pipeline_id)
