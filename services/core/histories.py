"""The aggregate processor's view of the event log: every pipeline's history, caught up from Kafka."""
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
            self._positions[rec.partition] = rec.offset + 1
            name, record = self._codec.decode(rec.value)
            msg = Message.from_record(name, record)
            if msg.pipeline_id:
                self._histories[msg.pipeline_id].append(msg)
            if msg.envelope.get("causation_id"):
                self._answered.add(msg.envelope["causation_id"])
            n += 1
        return n

    def history(self, pipeline_id: str) -> list[Message]:
        return list(self._histories.get(pipeline_id, ()))

    def already_applied(self, command_id: str) -> bool:
        return command_id in self._answered
