"""A processor's own fold of ``pipelines.events.v1``: every pipeline's history, caught up from Kafka.

The aggregate reads the log once at start-up (and again when it gains partitions or sees another writer's
records), then folds its own appends from their delivery reports; the agents read it to know a
pipeline's current draft. Records seen twice (a catch-up, then Faust redelivering from its committed
offset) are folded once, by offset. A record that cannot be decoded (foreign bytes, truncated Avro), is
not a type of this log, or does not apply to its pipeline's history (services.domain.events.PipelineLog)
is skipped and handed to the processor's dead letters, never allowed to stop the fold: the log of record
must not be poisonable.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Iterable, Optional

from services.core.avro import AvroCodec
from services.core.dlq import POISON, DeadLetters, Send
from services.core.eventlog import LogReader, Record
from services.core.messages import Message
from services.domain.events import PipelineLog

log = logging.getLogger("aietl.histories")


class PipelineHistories:
    """Histories folded from ``pipelines.events.v1``; also knows which commands already had effect."""

    def __init__(self, reader: Optional[LogReader], codec: AvroCodec, dead: Optional[DeadLetters] = None,
                 send: Optional[Send] = None):
        self._reader = reader
        self._codec = codec
        self._dead = dead  # None: only in unit tests of the fold, which feed it valid events
        self._send = send  # how dead letters go out (the aggregate's appender), else the helper's producer
        # catch_up runs in a thread (to_thread) while observe may run on the event loop.
        self._lock = threading.RLock()
        self._positions: dict[int, int] = {}
        self._histories: dict[str, list[Message]] = defaultdict(list)
        self._answered: set[str] = set()  # command ids with an event (or rejection) on the log
        self._log = PipelineLog()
        self.skipped = 0  # records skipped: undecodable, not of this log, or not applicable

    def catch_up(self) -> int:
        """Read whatever was appended since the last call (by us or a previous incarnation); blocking."""
        with self._lock:
            n = 0
            for rec in self._reader.read(self._positions):
                n += self.observe_record(rec) is not None
            return n

    def observe_record(self, rec: Record) -> Optional[Message]:
        """Fold one record read from the log (catch-up or a Faust agent): its Message when it was folded
        now, None when it was folded before or skipped as poison."""
        with self._lock:
            if rec.offset < self._positions.get(rec.partition, 0):
                return None
            try:
                msg = self._dead.decode(self._codec, rec) if self._dead else \
                    Message.from_record(*self._codec.decode(rec.value))
                self._log.accept(msg)
            except POISON as exc:
                self._positions[rec.partition] = rec.offset + 1
                self.skipped += 1
                if self._dead is not None:
                    self._dead.poison(rec, exc, self._send)
                return None
            self._fold(rec.partition, rec.offset, msg)
            return msg

    def _fold(self, partition: int, offset: int, msg: Message) -> None:
        self._positions[partition] = offset + 1
        if msg.pipeline_id:
            self._histories[msg.pipeline_id].append(msg)
        if msg.envelope.get("causation_id"):
            self._answered.add(msg.envelope["causation_id"])

    def observe(self, partition: int, offset: int, msg: Message) -> bool:
        """Fold one of the writer's own appends; False if it was already folded."""
        with self._lock:
            if offset < self._positions.get(partition, 0):
                return False
            self._log.trust(msg)
            self._fold(partition, offset, msg)
            return True

    def fold_appended(self, appended: Iterable[tuple[int, int, Message]]) -> bool:
        """Fold the writer's own appends, (partition, offset, message) from delivery reports.

        True if every partition's appends continue exactly where the fold stood; False (nothing folded
        from that partition) when there is a gap, i.e. someone else wrote in between: the caller must
        then :meth:`catch_up`, which reads the other writer's records and ours in log order.
        """
        by_partition: dict[int, list[tuple[int, Message]]] = defaultdict(list)
        for partition, offset, msg in appended:
            by_partition[partition].append((offset, msg))
        contiguous = True
        with self._lock:
            for partition, records in by_partition.items():
                records.sort(key=lambda r: r[0])
                expected = self._positions.get(partition, 0)
                fresh = [(o, m) for o, m in records if o >= expected]  # a catch-up may have read some
                if fresh and any(o != expected + i for i, (o, _) in enumerate(fresh)):
                    contiguous = False
                    continue
                for offset, msg in fresh:
                    self.observe(partition, offset, msg)
        return contiguous

    def behind(self) -> bool:
        """Whether the log holds records past the fold (one end-offset lookup per partition); blocking."""
        with self._lock:
            ends = self._reader.end_offsets()
            return any(end > self._positions.get(p, 0) for p, end in ends.items())

    def positions(self) -> dict[int, int]:
        """Next offset to fold, per partition."""
        with self._lock:
            return dict(self._positions)

    def history(self, pipeline_id: str) -> list[Message]:
        with self._lock:
            return list(self._histories.get(pipeline_id, ()))

    def already_applied(self, command_id: str) -> bool:
        return command_id in self._answered

    def close(self) -> None:
        self._reader.close()
