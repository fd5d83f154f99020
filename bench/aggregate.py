"""B0: commands decided per second by ``pipeline-aggregate`` under a burst: ``python -m bench.aggregate``.

On a topic prefix of its own, with one aggregate worker running, each repeat bursts ``--commands``
CreatePipeline commands straight onto ``pipelines.commands.v1`` and reads the events they cause. Decided/s
is counted from the first to the last event (their broker timestamps, which the aggregate's producer sets
when it appends them); "decided within" is from the first command sent to the last event.

The baseline in the same run is a raw confluent-kafka loop doing the least an exactly-once decider does
for a create: consume a batch, decode the command, decide it (``apply_command`` on an empty history),
encode and produce the event, wait for the deliveries, commit the batch's offsets. It reads the same burst
from a scratch topic and writes to another, so the ratio is the aggregate's cost over what Kafka allows.

Goals (issue 12): >= 1,000 commands/s and a burst of 10,000 decided within 30 s. A missed goal is
printed as MISSED with exit code 0 (a report, not a test); errors exit non-zero. Everything the run
created (topics, consumer groups, the worker) is removed at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

GOAL_RATE = 1_000.0  # commands/s
GOAL_BURST_S = 30.0  # for a burst of GOAL_BURST commands
GOAL_BURST = 10_000
CREATE = "aietl.pipelines.v1.CreatePipeline"
PARTITIONS = 6


@dataclass
class Burst:
    """What one burst measured: commands sent, events seen, first/last event time, when the first was sent."""

    sent: int
    decided: int
    sent_at: float
    first_event: Optional[float]
    last_event: Optional[float]

    @property
    def rate(self) -> float:
        if self.decided < 2 or self.last_event == self.first_event:
            return 0.0
        return (self.decided - 1) / (self.last_event - self.first_event)

    @property
    def within(self) -> float:
        return (self.last_event or self.sent_at) - self.sent_at


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def _commands(settings, codec, n: int) -> list[tuple[bytes, bytes, str]]:
    from services.core.messages import Message, new_envelope

    out = []
    for i in range(n):
        pid = str(uuid.uuid4())
        msg = Message(CREATE, new_envelope(CREATE, tenant_id=settings.tenant_id, actor="bench", pipeline_id=pid),
                      {"description": f"copy orders to ClickHouse #{i}", "name": None, "labels": {}})
        out.append((pid.encode(), codec.encode(CREATE, msg.to_record()), msg.message_id))
    return out


def _send(settings, topic: str, commands) -> float:
    from services.core.kafka import producer

    p = producer(settings, **{"linger.ms": 5, "batch.num.messages": 10_000})
    started = time.time()
    for key, value, _ in commands:
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(60):
        raise RuntimeError(f"burst not delivered to {topic}")
    return started


def _ends(settings, topic: str) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    from services.core.kafka import consumer

    from confluent_kafka import KafkaException

    c = consumer(settings, group_id=f"bench-ends-{uuid.uuid4().hex[:6]}")
    try:
        for attempt in range(50):  # a topic created a moment ago may have no leader yet
            try:
                return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                        for p in range(PARTITIONS)}
            except KafkaException:
                if attempt == 49:
                    raise
                time.sleep(0.2)
    finally:
        c.close()


def _collect(settings, codec, topic: str, start: dict[int, int], ids: set[str], timeout: float) -> tuple:
    """(count, first ts, last ts) of events caused by ``ids`` on ``topic`` after ``start``; stops at ``timeout``
    seconds without a new one."""
    from confluent_kafka import TopicPartition

    from services.core.kafka import consumer

    c = consumer(settings, group_id=f"bench-read-{uuid.uuid4().hex[:6]}")
    c.assign([TopicPartition(topic, p, off) for p, off in start.items()])
    seen, first, last = 0, None, None
    idle_since = time.monotonic()
    try:
        while seen < len(ids) and time.monotonic() - idle_since < timeout:
            for msg in c.consume(1000, 0.5):
                if msg.error():
                    continue
                _, record = codec.decode(msg.value())
                if record["envelope"].get("causation_id") not in ids:
                    continue
                ts = msg.timestamp()[1] / 1000.0
                first = ts if first is None else min(first, ts)
                last = ts if last is None else max(last, ts)
                seen += 1
                idle_since = time.monotonic()
    finally:
        c.close()
    return seen, first, last


def run_aggregate(settings, codec, n: int, timeout: float) -> Burst:
    commands = _commands(settings, codec, n)
    events = settings.topic("pipelines.events.v1")
    start = _ends(settings, events)
    sent_at = _send(settings, settings.topic("pipelines.commands.v1"), commands)
    seen, first, last = _collect(settings, codec, events, start, {c[2] for c in commands}, timeout)
    return Burst(n, seen, sent_at, first, last)


def raw_loop(settings, codec, source: str, target: str, n: int, timeout: float) -> None:
    """The baseline: consume, decode, decide, encode, produce, wait for deliveries, commit; per batch."""
    from services.core.kafka import consumer, producer
    from services.core.messages import Message
    from services.domain.commands import apply_command

    # One group for the whole run: each repeat goes on from the previous one's committed offsets.
    c = consumer(settings, group_id=f"{settings.topic_prefix}bench-raw")
    p = producer(settings)
    c.subscribe([source])
    done, idle_since = 0, time.monotonic()
    try:
        while done < n and time.monotonic() - idle_since < timeout:
            batch = c.consume(500, 0.1)
            if not batch:
                continue
            idle_since = time.monotonic()
            for msg in batch:
                if msg.error():
                    continue
                name, record = codec.decode(msg.value())
                for ev in apply_command([], Message.from_record(name, record)):
                    p.produce(target, key=msg.key(), value=codec.encode(ev.name, ev.to_record()))
                done += 1
            if p.flush(30):
                raise RuntimeError("baseline deliveries timed out")
            c.commit(asynchronous=False)
    finally:
        c.close()


def run_baseline(settings, codec, n: int, timeout: float) -> Burst:
    source, target = settings.topic("bench.b0.commands"), settings.topic("bench.b0.events")
    commands = _commands(settings, codec, n)
    start = _ends(settings, target)
    sent_at = _send(settings, source, commands)
    raw_loop(settings, codec, source, target, n, timeout)
    seen, first, last = _collect(settings, codec, target, start, {c[2] for c in commands}, timeout)
    return Burst(n, seen, sent_at, first, last)


def _create_scratch_topics(settings) -> None:
    from confluent_kafka.admin import NewTopic

    from services.core.kafka import admin_client

    admin = admin_client(settings)
    names = [settings.topic("bench.b0.commands"), settings.topic("bench.b0.events")]
    for f in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names]).values():
        f.result(30)


def _wait_ready(settings, codec, timeout: float = 120.0) -> None:
    """One command through the worker: its group is up and its start-up catch-up is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = run_aggregate(settings, codec, 1, timeout=5)
        if b.decided:
            return
    raise RuntimeError("pipeline-aggregate did not decide a first command; see its log under .aietl/run/")


def _cleanup(settings) -> None:
    from services.core.kafka import admin_client
    from services.processes import stop_all

    stop_all(settings, log=lambda _: None)
    admin = admin_client(settings)
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)]
    if topics:
        for f in admin.delete_topics(topics).values():
            f.result(30)
    groups = [g.group_id for g in admin.list_consumer_groups().result(10).valid
              if g.group_id.startswith(settings.topic_prefix)]
    if groups:
        for f in admin.delete_consumer_groups(groups).values():
            try:
                f.result(30)
            except Exception:  # a group still emptying after its member left; harmless leftover
                pass


def measure(n: int, repeat: int, timeout: float, log: Callable[[str], None]) -> tuple[list[Burst], list[Burst]]:
    from services.core.avro import build_codec
    from services.core.settings import load_settings
    from services.processes import spawn
    from tests.harness import prepare_topics

    base = load_settings()
    settings = base.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}-b0.",
                                       "tenant_id": f"bench-b0-{uuid.uuid4().hex[:6]}", "log_level": "warning"})
    codec = build_codec(settings.schema_registry_url)
    ours, raw = [], []
    try:
        prepare_topics(settings)
        _create_scratch_topics(settings)
        spawn(settings, "pipeline-aggregate", ["worker", "pipeline-aggregate"])
        _wait_ready(settings, codec)
        for i in range(repeat):
            b = run_aggregate(settings, codec, n, timeout)
            ours.append(b)
            log(f"  repeat {i + 1}: aietl {b.decided}/{b.sent} decided, {_rate(b.rate)}/s, within {b.within:.1f} s")
            r = run_baseline(settings, codec, n, timeout)
            raw.append(r)
            log(f"  repeat {i + 1}: raw   {r.decided}/{r.sent} decided, {_rate(r.rate)}/s, within {r.within:.1f} s")
    finally:
        _cleanup(settings)
    return ours, raw


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aggregate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=GOAL_BURST, help="CreatePipeline commands per burst")
    parser.add_argument("--repeat", type=int, default=3, help="bursts per side, interleaved; medians reported")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="give up on a burst after this many seconds without a new event")
    args = parser.parse_args(argv)
    print(f"B0: bursts of {args.commands:,} CreatePipeline, {args.repeat} repeats, load {os.getloadavg()[0]:.2f}")
    ours, raw = measure(args.commands, args.repeat, args.timeout, print)
    if any(b.decided < b.sent for b in ours + raw):
        print("ERROR: some commands were not decided (see the repeats above)", file=sys.stderr)
    ours_rate, raw_rate = statistics.median(b.rate for b in ours), statistics.median(b.rate for b in raw)
    ours_within = statistics.median(b.within for b in ours)
    ratios = [o.rate / r.rate if r.rate else 0.0 for o, r in zip(ours, raw)]
    print(f"aietl pipeline-aggregate: {_rate(ours_rate)} commands/s decided (median), burst decided within "
          f"{ours_within:.1f} s")
    print(f"raw confluent-kafka loop: {_rate(raw_rate)} commands/s")
    print(f"ratio aietl/raw: {ours_rate / raw_rate if raw_rate else 0:.3g} (per repeat: "
          f"{', '.join(f'{x:.3g}' for x in ratios)}); load after {os.getloadavg()[0]:.2f}")
    rate_ok = ours_rate >= GOAL_RATE
    if args.commands >= GOAL_BURST:
        burst = "met" if ours_within <= GOAL_BURST_S else "MISSED"
    else:
        burst = f"not measured (bursts of {args.commands:,})"
    print(f"goal >= {GOAL_RATE:,.0f}/s: {'met' if rate_ok else 'MISSED'}; goal {GOAL_BURST:,} within "
          f"{GOAL_BURST_S:.0f} s: {burst}")
    return 1 if any(b.decided < b.sent for b in ours + raw) else 0


if __name__ == "__main__":
    sys.exit(main())
