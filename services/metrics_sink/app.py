"""metrics-sink: runs.events.v1, metrics.v1 and audit.v1 -> ClickHouse analytics tables.

Run state changes go to ``pipeline_runs`` (its materialized view keeps ``pipeline_runs_hourly``), batch
measurements to ``run_batches``, run log lines to ``execution_logs``, streaming lag to ``stream_lag``, the
audit trail (services/audit) to ``audit_log``.

Delivery is at-least-once. Events are buffered (up to FLUSH_ROWS, at most FLUSH_SECONDS), inserted, and
only then acknowledged, so Faust commits their offsets after the rows are in ClickHouse. While an insert
fails (ClickHouse down, a table missing) the agent retries and consumes nothing more; nothing is
acknowledged, so a stop or crash meanwhile loses nothing. A crash *between* an insert and the next offset
commit (every broker_commit_interval, 1 s) re-inserts that batch on restart: ``pipeline_runs`` and
``stream_lag`` rows carry the event's message id as ``event_id`` (stream_lag is a ReplacingMergeTree that
drops the copies on merge); ``run_batches`` and ``execution_logs`` rows are unique by (run_id, batch_seq) and
(run_id, seq). Exact queries count those distinct keys.

A record it cannot decode or turn into a row (or of a type its topic does not carry) is skipped and counted
(services.core.dlq); metrics-sink dead-letters those of ``metrics.v1`` (it owns that DLQ), the executor
those of ``runs.events.v1``.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Callable, Optional

from services.core.avro import AvroCodec
from services.core.dlq import POISON, DeadLetters, record_of
from services.core.faust_app import make_app, topic
from services.core.platform_clickhouse import LockedClient
from services.core.settings import Settings
from services.metrics_sink.rows import COLUMNS, row_for

log = logging.getLogger("aietl.metrics_sink")
PROCESSOR = "metrics-sink"
TOPICS = ("runs.events.v1", "metrics.v1", "audit.v1")
FLUSH_ROWS = 500
FLUSH_SECONDS = 1.0
RETRY_MAX_SECONDS = 10.0


class ClickHouseWriter:
    """Inserts rows per table over the platform's ClickHouse connection (shared by the agents)."""

    def __init__(self, settings: Settings, connect: Optional[Callable[[], object]] = None):
        self.database = settings.clickhouse_database
        self._ch = LockedClient(settings, connect)

    def insert(self, rows: list[tuple[str, dict]]) -> None:
        by_table: dict[str, list[tuple]] = defaultdict(list)
        for table, row in rows:
            by_table[table].append(tuple(row[c] for c in COLUMNS[table]))
        for table, values in by_table.items():
            self._ch.execute(f"INSERT INTO {self.database}.{table} ({', '.join(COLUMNS[table])}) VALUES", values)


def decode_rows(codec: AvroCodec, dead: DeadLetters, events) -> list[tuple[str, dict]]:
    """Rows for a batch of Kafka events; poison is skipped and dead-lettered (blocking: run in a thread)."""
    rows = []
    for event in events:
        rec = record_of(event)
        try:
            row = row_for(dead.decode(codec, rec))
        except POISON as exc:
            dead.poison(rec, exc)
            continue
        if row is not None:
            rows.append(row)
    return rows


async def insert_until_done(writer: ClickHouseWriter, rows: list[tuple[str, dict]]) -> None:
    """Retry until ClickHouse takes the rows: the batch's offsets must not be committed before that."""
    delay = 0.5
    while True:
        try:
            await asyncio.to_thread(writer.insert, rows)
            return
        except Exception as exc:  # any driver or network error; the rows themselves are well-typed
            # The driver's message is "Code: N." then the server's message, then its stack trace: keep two lines.
            reason = " ".join(str(exc).splitlines()[:2]) or type(exc).__name__
            log.warning("insert of %d rows failed, retrying in %.1fs: %s", len(rows), delay, reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


def build(settings: Settings, codec: AvroCodec, writer: Optional[ClickHouseWriter] = None):
    app = make_app(settings, PROCESSOR)
    writer = writer or ClickHouseWriter(settings)
    dead = DeadLetters(settings, PROCESSOR)
    for logical in TOPICS:
        _add_agent(app, settings, codec, writer, dead, logical)
    return app


def _add_agent(app, settings: Settings, codec: AvroCodec, writer: ClickHouseWriter, dead: DeadLetters,
               logical: str) -> None:
    async def sink(stream):
        # noack_take: Faust must not acknowledge (and so commit) anything until the insert succeeded.
        async for events in stream.noack_take(FLUSH_ROWS, within=FLUSH_SECONDS):
            rows = await asyncio.to_thread(decode_rows, codec, dead, events)
            if rows:
                await insert_until_done(writer, rows)
            for event in events:
                await stream.ack(event)
            log.debug("stored %d rows from %d %s events", len(rows), len(events), logical)

    app.agent(topic(app, settings, logical), name=f"{PROCESSOR}.{logical}")(sink)
