"""A processor's own fold of ``pipelines.events.v1``: every pipeline's history, caught up from Kafka.

The aggregate reads the log once at start-up (and again when it gains partitions or sees another writer's
records), then folds its own appends from their delivery reports; the agents read it to know a
pipeline's current draft. Records seen twice (a catch-up, then Faust redelivering from its committed
offset) are folded once, by offset. A record that cannot be decoded (foreign bytes, truncated Avro) is
skipped and counted, never allowed to stop the fold: the log of record must not be poisonable.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Callable, Iterable, Optional

from services.core.avro import AvroCodec
from services.core.eventlog import LogReader, Record, decoded
from services.core.messages import Message

log = logging.getLogger("aietl.histories")


class PipelineHistories:
    """Histories folded from ``pipelines.events.v1``; also knows which commands already had effect."""

    def __init__(self, reader: LogReader, codec: AvroCodec,
                 on_undecodable: Optional[Callable[[Record, Exception], None]] = None):
        self._reader = reader
        self._codec = codec
        self._on_undecodable = on_undecodable
        # catch_up runs in a thread (to_thread) while observe may run on the event loop.
        self._lock = threading.RLock()
        self._positions: dict[int, int] = {}
        self._histories: dict[str, list[Message]] = defaultdict(list)
        self._answered: set[str] = set()  # command ids with an event (or rejection) on the log
        self.undecodable = 0  # records skipped because they could not be decoded

    def catch_up(self) -> int:
        """Read whatever was appended since the last call (by us or a previous incarnation); blocking."""
        with self._lock:
            n = 0
            for rec, msg in decoded(self._reader.read(self._positions), self._codec, self._skip):
                n += self.observe(rec.partition, rec.offset, msg)
            return n

    def _skip(self, rec: Record, exc: Exception) -> None:
        self._positions[rec.partition] = max(self._positions.get(rec.partition, 0), rec.offset + 1)
        self.undecodable += 1
        log.warning("skipped undecodable record %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, exc)
        if self._on_undecodable is not None:
            self._on_undecodable(rec, exc)

    def observe(self, partition: int, offset: int, msg: Message) -> bool:
        """Fold one record read elsewhere (e.g. by a Faust agent); False if it was already folded."""
        with self._lock:
            if offset < self._positions.get(partition, 0):
                return False
            self._positions[partition] = offset + 1
            if msg.pipeline_id:
                self._histories[msg.pipeline_id].append(msg)
            if msg.envelope.get("causation_id"):
                self._answered.add(msg.envelope["causation_id"])
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
