"""The deployments a trigger processor acts on, folded from the whole of ``pipelines.events.v1``.

Shared by the scheduler and the Kafka trigger. Several instances of one processor share a Faust consumer
group, so each instance's agent only sees the partitions the group gave it; but every instance must know
every deployment (any instance may fire any pipeline, the deterministic command ids make that safe). So
the fold is fed from two places, both in log order per partition:

* :meth:`DeploymentFeed.catch_up` reads the whole topic with a :class:`LogReader` from the positions
  folded so far. It runs at start and on every timer tick, and it is what makes the fold complete.
* :meth:`DeploymentFeed.observe` takes a live event from the Faust agent when it is the next one of its
  partition, so lifecycle changes on our own partitions are seen without waiting for a tick.

A record is folded once: one position per partition, only the next offset is accepted.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Optional

from services.core.avro import AvroCodec, AvroCodecError
from services.core.eventlog import LogReader
from services.core.messages import Message, utcnow
from services.core.settings import Settings
from services.domain.deployments import Deployment, Deployments
from services.scheduler.slots import parse_instant

log = logging.getLogger("aietl.triggers")


class DeploymentFeed:
    def __init__(self, reader: LogReader, codec: AvroCodec):
        self._reader = reader
        self._codec = codec
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
        return cls(LogReader(settings, settings.topic("pipelines.events.v1")), codec)

    def catch_up(self) -> int:
        """Fold whatever was appended since the last call; blocking (run it in a thread)."""
        started = utcnow()
        with self._lock:
            positions = dict(self._positions)
        n = 0
        for rec in self._reader.read(positions):
            msg = self._decode(rec.value, rec.partition, rec.offset)
            n += self._accept(rec.partition, rec.offset, msg)
        self.fresh_as_of = started
        return n

    def observe(self, partition: int, offset: int, value: bytes) -> bool:
        """Fold one live record if it is the next of its partition; a gap is left to the next catch-up."""
        with self._lock:
            if offset != self._positions.get(partition, 0):
                return False  # the usual case for Faust's redelivery of what catch-up already read
        return self._accept(partition, offset, self._decode(value, partition, offset))

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
    def _decode(self, value: bytes, partition: int, offset: int) -> Optional[Message]:
        try:
            name, record = self._codec.decode(value)
            return Message.from_record(name, record)
        except (AvroCodecError, KeyError, TypeError) as exc:
            # The projector dead-letters poison events; here it is enough not to get stuck on one.
            log.warning("skipped an undecodable event at partition %d offset %d: %s", partition, offset, exc)
            return None

    def _accept(self, partition: int, offset: int, msg: Optional[Message]) -> bool:
        with self._lock:
            if offset != self._positions.get(partition, 0):
                return False
            self._positions[partition] = offset + 1
            if msg is not None:
                self._fold(msg)
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
