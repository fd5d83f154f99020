"""The deployments a trigger processor acts on, folded from the whole of ``pipelines.events.v1``.

Shared by the scheduler and the Kafka trigger. Several instances of one processor share a Faust consumer
group, so each instance's agent only sees the partitions the group gave it; but every instance must know
every deployment (any instance may fire any pipeline, the deterministic command ids make that safe). So
the fold is fed from two places, both in log order per partition:

* :meth:`DeploymentFeed.catch_up` reads the whole topic with a :class:`LogReader` from the positions
  folded so far. It runs at start and on every timer tick, and it is what makes the fold complete.
* :meth:`DeploymentFeed.observe` takes a live event from the Faust agent when it is the next one of its
  partition, so lifecycle changes on our own partitions are seen without waiting for a tick.

A record is folded once: one position per partition, only the next offset is accepted. One that cannot be
decoded or does not apply (services.domain.events.PipelineLog, the check every reader of the log makes)
is skipped and counted (services.core.dlq; the aggregate owns the log's DLQ).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Optional

from services.core.avro import AvroCodec
from services.core.dlq import POISON, DeadLetters
from services.core.eventlog import LogReader, Record
from services.core.messages import Message, utcnow
from services.core.settings import Settings
from services.domain.deployments import Deployment, Deployments
from services.domain.events import PipelineLog
from services.scheduler.slots import parse_instant

log = logging.getLogger("aietl.triggers")


class DeploymentFeed:
    def __init__(self, reader: LogReader, codec: AvroCodec, dead: Optional[DeadLetters] = None):
        self._reader = reader
        self._codec = codec
        self._dead = dead
        self._log = PipelineLog()
        self._lock = threading.Lock()  # catch_up runs in a thread, observe on the event loop
        self._positions: dict[int, int] = {}
        self.deployments = Deployments()
        self.resumed_at: dict[str, datetime] = {}
        # Latest cron slot with a RunRequested on the log, per pipeline: a restarted scheduler does not
        # send those again (the aggregate would drop them, but it need not be asked).
        self.cron_slots: dict[str, datetime] = {}
        # When the last complete catch-up started: every event appended before it has been folded.
        self.fresh_as_of: Optional[datetime] = None

    @classmethod
    def open(cls, settings: Settings, codec: AvroCodec) -> "DeploymentFeed":
        return cls(LogReader(settings, settings.topic("pipelines.events.v1")), codec, DeadLetters(settings))

    def catch_up(self) -> int:
        """Fold whatever was appended since the last call; blocking (run it in a thread)."""
        started = utcnow()
        with self._lock:
            positions = dict(self._positions)
        n = 0
        for rec in self._reader.read(positions):
            n += self._accept(rec)
        self.fresh_as_of = started
        return n

    def observe(self, rec: Record) -> bool:
        """Fold one live record if it is the next of its partition; a gap is left to the next catch-up."""
        return self._accept(rec)  # not the next: the usual case for Faust's redelivery of catch-up's reads

    def close(self) -> None:
        self._reader.close()

    def active(self) -> list[Deployment]:
        with self._lock:
            return list(self.deployments.active())

    def drain_changed(self) -> list[Deployment]:
        with self._lock:
            return self.deployments.drain_changed()

    def not_before(self, d: Deployment) -> Optional[datetime]:
        """Nothing that happened before this instant may trigger the deployment: the later of the deploy
        (or rollback) and the last resume."""
        times = [t for t in (parse_instant(d.deployed_at), self.resumed_at.get(d.pipeline_id)) if t is not None]
        return max(times) if times else None

    # -- folding -------------------------------------------------------------------------------------
    def _accept(self, rec: Record) -> bool:
        with self._lock:
            if rec.offset != self._positions.get(rec.partition, 0):
                return False
            self._positions[rec.partition] = rec.offset + 1
            try:
                msg = self._dead.decode(self._codec, rec) if self._dead else \
                    Message.from_record(*self._codec.decode(rec.value))
                self._log.accept(msg)
                self._fold(msg)
            except POISON as exc:
                if self._dead is None:
                    raise
                self._dead.poison(rec, exc)
            return True

    def _fold(self, msg: Message) -> None:
        self.deployments.observe(msg)
        pid = msg.pipeline_id
        if msg.short_name == "PipelineResumed" and pid:
            self.resumed_at[pid] = parse_instant(msg.envelope.get("occurred_at"))
        elif msg.short_name == "RunRequested" and pid:
            self._remember_run(pid, msg.payload)

    def _remember_run(self, pid: str, payload: dict) -> None:
        if payload.get("trigger_kind") == "cron" and payload.get("slot"):
            slot = parse_instant(payload["slot"])
            if pid not in self.cron_slots or slot > self.cron_slots[pid]:
                self.cron_slots[pid] = slot
