"""Kafka topics as tables (confluent-kafka): fields inferred by sampling messages from the beginning.

params: bootstrap, security_protocol, sasl_mechanism, sasl_username (optional); secrets: sasl_password.
Values are decoded as JSON, or as Avro single-object messages when the fingerprint is one of ours
(``schemas_avro/``). Sampling assigns partitions directly (no consumer-group join, no committed offsets),
so it leaves no trace on the cluster.
"""
from __future__ import annotations

import functools
import json
import time
import uuid
from typing import Any, Optional

from services.connectors.introspect import Column, IntrospectionError, TableNotFound
from services.connectors.registry import Connection

SAMPLE_MESSAGES = 100
SAMPLE_TIMEOUT_S = 10.0
AVRO_MARKER = b"\xc3\x01"


def client_config(conn: Connection) -> dict[str, Any]:
    conf = {"bootstrap.servers": conn.param("bootstrap"), "client.id": "aietl-introspect"}
    optional = {"security.protocol": conn.param("security_protocol"),
                "sasl.mechanism": conn.param("sasl_mechanism"), "sasl.username": conn.param("sasl_username"),
                "sasl.password": conn.secret("sasl_password")}
    conf.update({k: v for k, v in optional.items() if v})
    return conf


def _metadata(conn: Connection, topic: Optional[str] = None):
    from confluent_kafka.admin import AdminClient  # imported here: no client at import time

    return AdminClient(client_config(conn)).list_topics(topic=topic, timeout=float(conn.param("timeout_s", 5)))


def test(conn: Connection) -> str:
    md = _metadata(conn)
    return f"Kafka: {len(md.brokers)} broker(s), {len(md.topics)} topics"


def list_tables(conn: Connection) -> list[str]:
    return sorted(t for t in _metadata(conn).topics if not t.startswith("__"))  # __consumer_offsets etc.


def table_schema(conn: Connection, name: str, sample: int = SAMPLE_MESSAGES) -> list[Column]:
    """Columns of the sampled messages' values; [] when the topic holds no messages yet."""
    from services.connectors.files import infer_records

    return infer_records(sample_rows(conn, name, sample))


def sample_rows(conn: Connection, name: str, limit: int) -> list[dict]:
    return [decode_value(v) for v in _sample_values(conn, name, limit)]


def topic_partitions(conn: Connection, topic: str) -> list[int]:
    md = _metadata(conn, topic).topics.get(topic)
    if md is None or md.error is not None:
        raise TableNotFound(f"no topic {topic!r} in connection {conn.name!r}")
    return sorted(md.partitions)


def _sample_values(conn: Connection, topic: str, limit: int) -> list[bytes]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    partitions = topic_partitions(conn, topic)
    consumer = Consumer({**client_config(conn), "group.id": f"aietl-introspect-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        return _drain(consumer, set(partitions), limit)
    finally:
        consumer.close()


def _drain(consumer, partitions: set[int], limit: int) -> list[bytes]:
    """Values until ``limit``, the end of every partition, or the sampling timeout."""
    from confluent_kafka import KafkaError, KafkaException

    values: list[bytes] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + SAMPLE_TIMEOUT_S
    while len(values) < limit and at_end != partitions and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=limit - len(values), timeout=0.5):
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
            elif err is not None:
                raise KafkaException(err)
            elif msg.value() is not None:  # tombstones carry no fields
                values.append(msg.value())
    return values[:limit]


def decode_value(value: bytes) -> dict:
    """A message value as a record: Avro single-object (our schemas), JSON, or the raw text."""
    if value[:2] == AVRO_MARKER:
        try:
            return _codec().decode(value)[1]
        except Exception as exc:  # an Avro message of a schema we do not know
            raise IntrospectionError(f"cannot decode an Avro message: {exc}") from None
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"value": value.decode("utf-8", "replace")}
    return doc if isinstance(doc, dict) else {"value": doc}


@functools.lru_cache(maxsize=1)
def _codec():
    from services.core.avro import build_codec  # loads every schema once, only when Avro is met

    return build_codec()
