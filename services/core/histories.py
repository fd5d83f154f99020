"""A processor's own fold of ``pipelines.events.v1``: every pipeline's history, caught up from Kafka.

The aggregate processor reads it before deciding a command; the agents read it to know a pipeline's
current draft. Records seen twice (the start-up catch-up, then Faust redelivering from its committed
offset) are folded once, by offset.
"""
from __future__ import annotations

from collections import defaultdict

from services.core.avro import AvroCodec
from services.core.eventlog import LogReader
from services.core.messages import Message


class PipelineHistories:
    """Histories folded from ``pipelines.events.v1``; also knows which commands already had effect."""

    def __init__(self, reader: LogReader, codec: AvroCodec):
        self._reader = reader
        self._codec = codec
        self._positions: dict[int, int] = {}
        self._histories: dict[str, list[Message]] = defaultdict(list)
        self._answered: set[str] = set()  # command ids with an event (or rejection) on the log

    def catch_up(self) -> int:
        """Read whatever was appended since the last call (by us or a previous incarnation)."""
        n = 0
        for rec in self._reader.read(self._positions):
            name, record = self._codec.decode(rec.value)
            n += self.observe(rec.partition, rec.offset, Message.from_record(name, record))
        return n

    def observe(self, partition: int, offset: int, msg: Message) -> bool:
        """Fold one record read elsewhere (e.g. by a Faust agent); False if it was already folded."""
        if offset < self._positions.get(partition, 0):
            return False
        self._positions[partition] = offset + 1
        if msg.pipeline_id:
            self._histories[msg.pipeline_id].append(msg)
        if msg.envelope.get("causation_id"):
            self._answered.add(msg.envelope["causation_id"])
        return True

    def history(self, pipeline_id: str) -> list[Message]:
        return list(self._histories.get(pipeline_id, ()))

    def already_applied(self, command_id: str) -> bool:
        return command_id in self._answered
