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
    if not conn.param("sasl_username") and _is_platform_broker(conn.param("bootstrap")):
        # The platform's own broker is closed: a connection to it speaks as this process's principal,
        # whose ACLs allow users' topics and none of the platform's (topology/acls.py).
        from services.core.kafka_auth import client_conf
        from services.core.settings import load_settings

        conf.update({k: v for k, v in client_conf(load_settings()).items() if k != "bootstrap.servers"})
    return conf


def _is_platform_broker(bootstrap) -> bool:
    from services.core.settings import load_settings

    ours = {b.strip() for b in load_settings().kafka_bootstrap.split(",")}
    return bool(ours & {b.strip() for b in str(bootstrap or "").split(",")})


def _metadata(conn: Connection, topic: Optional[str] = None):
    from confluent_kafka.admin import AdminClient  # imported here: no client at import time

    return AdminClient(client_config(conn)).list_topics(topic=topic, timeout=float(conn.param("timeout_s", 5)))


def test(conn: Connection) -> str:
    md = _metadata(conn)
    return f"Kafka: {len(md.brokers)} broker(s), {len(_visible(conn, md.topics))} topics"


def list_tables(conn: Connection) -> list[str]:
    return sorted(_visible(conn, _metadata(conn).topics))


# The platform's own broker carries its commands and events: a connection pointing at it (same bootstrap
# host:port, resolved) sees only the topics an admin marked shared (AIETL_KAFKA_SHARED_TOPICS, fnmatch
# patterns); the platform's topics stay refused even then (services.connectors.guards).

def shared_topics(settings=None) -> list[str]:
    """The topic patterns of the platform's broker an admin shared with connections."""
    from services.connectors.guards import PlatformStores
    from services.core.settings import load_settings

    return list(PlatformStores.of(settings or load_settings()).shared_topics)


def platform_broker(bootstrap: str, settings=None) -> bool:
    """Does any server of ``bootstrap`` resolve to the platform's own broker?"""
    from services.connectors.guards import PlatformStores, on_platform_broker
    from services.core.settings import load_settings

    return on_platform_broker(bootstrap, PlatformStores.of(settings or load_settings()))


def topic_allowed(conn: Connection, topic: str, settings=None) -> bool:
    from services.connectors.guards import PlatformStores, _topic_problems, on_platform_broker
    from services.core.settings import load_settings

    if topic.startswith("__"):  # __consumer_offsets etc.
        return False
    stores = PlatformStores.of(settings or load_settings())
    if not on_platform_broker(conn.param("bootstrap"), stores):
        return True
    if _topic_problems("source", topic, stores):
        return False
    return stores.shares(topic)


def _visible(conn: Connection, topics) -> list[str]:
    from services.core.settings import load_settings

    settings = load_settings()
    return [t for t in topics if topic_allowed(conn, t, settings)]


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

    if not topic_allowed(conn, topic):  # same answer as a missing topic: nothing to learn about the broker
        raise TableNotFound(f"no topic {topic!r} in connection {conn.name!r}")
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
