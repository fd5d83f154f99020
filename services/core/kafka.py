"""Kafka clients built from settings (confluent-kafka), used outside Faust: gateway, admin, replay."""
from __future__ import annotations

import json
from typing import Optional

from services.core.kafka_auth import ADMIN, client_conf
from services.core.settings import Settings

# Same partitioner as the Java client and aiokafka/Faust, so a key lands on the same partition number
# whoever produces it: that is what keeps commands, events and runs co-partitioned.
PARTITIONER = "murmur2_random"


def admin_client(settings: Settings):
    from confluent_kafka.admin import AdminClient

    # log_level 3: short-lived admin clients otherwise log "purging unserved events" at exit.
    # The admin client is the process's own principal (the gateway's describes only what it may).
    return AdminClient({**client_conf(settings), "log_level": 3})


def super_admin_client(settings: Settings):
    """An admin client as the bus's super user: topology apply, SCRAM users, ACLs, test cleanup."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({**client_conf(settings, ADMIN), "log_level": 3})


def producer(settings: Settings, **extra):
    from confluent_kafka import Producer

    conf = {**client_conf(settings), "partitioner": PARTITIONER,
            "enable.idempotence": True, "acks": "all", "linger.ms": 2}
    conf.update(extra)
    return Producer(conf)


def consumer(settings: Settings, group_id: Optional[str] = None, **extra):
    from confluent_kafka import Consumer

    conf = {**client_conf(settings), "group.id": group_id or "aietl-reader",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed"}
    conf.update(extra)
    return Consumer(conf)


def publish_schemas(settings: Settings, catalog, timeout: float = 30.0) -> int:
    """Publish every schema to the compacted schemas topic, keyed by fingerprint (hex)."""
    p = producer(settings)
    topic = settings.topic("schemas.v1")
    for schema in catalog:
        value = json.dumps({"name": schema.name, "fingerprint": schema.fingerprint_hex,
                            "schema": schema.canonical})
        p.produce(topic, key=schema.fingerprint_hex.encode(), value=value.encode())
    left = p.flush(timeout)
    if left:
        raise RuntimeError(f"{left} schema records not delivered to {topic}")
    return len(catalog.by_name)
