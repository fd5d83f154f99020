"""A subscriber that is not us: plain confluent-kafka plus fastavro, and nothing of aietl's code but its
credentials: the read-only ``subscriber`` principal of topology/topology.yaml."""
import io
import json
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas_avro"


def read_topic(settings, topic):
    from services.core.kafka_auth import client_conf

    c = Consumer({**client_conf(settings, "subscriber"), "group.id": f"{topic}.reader",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, eof = [], set()
    while len(eof) < len(parts):
        m = c.poll(10)
        assert m is not None, "timed out"
        if m.error():
            eof.add(m.partition())
            continue
        out.append(m)
    c.close()
    return out


def schemas_from_avsc_files():
    """fingerprint -> parsed schema, from the .avsc files alone (common types first)."""
    named = {}
    files = sorted(SCHEMAS.rglob("*.avsc"), key=lambda p: "common" not in p.parts)
    out = {}
    for path in files:
        parsed = fastavro.parse_schema(json.loads(path.read_text()), named_schemas=named)
        expanded = fastavro.schema.expand_schema(parsed)
        canonical = fastavro.schema.to_parsing_canonical_form(expanded)
        out[bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))] = parsed
    return out


def decode(value, by_fp):
    assert value[:2] == b"\xc3\x01", "not Avro single-object encoding"
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), by_fp[value[2:10]], None)


def test_outsider_decodes_every_event_with_only_the_avsc_files(system):
    with system.client() as c:
        pid = c.post("/api/v1/pipelines", json={"description": "copy orders to ClickHouse"}).json()["pipeline_id"]
        from tests.harness import wait_for
        wait_for(lambda: c.get(f"/api/v1/pipelines/{pid}").status_code == 200, what="projection")
    by_fp = schemas_from_avsc_files()
    records = read_topic(system.settings, system.topic("pipelines.events.v1"))
    decoded = [decode(m.value(), by_fp) for m in records]
    assert decoded and all(d["envelope"]["message_type"].startswith("aietl.pipelines.v1.") for d in decoded)
    assert any(d["envelope"]["pipeline_id"] == pid for d in decoded)
    assert all(m.key().decode() == decode(m.value(), by_fp)["envelope"]["pipeline_id"] for m in records)


def test_outsider_decodes_with_only_the_schemas_topic(system):
    schema_records = read_topic(system.settings, system.topic("schemas.v1"))
    by_fp = {}
    for m in schema_records:
        doc = json.loads(m.value())
        assert m.key().decode() == doc["fingerprint"]
        by_fp[bytes.fromhex(doc["fingerprint"])] = fastavro.parse_schema(json.loads(doc["schema"]))
    with system.client() as c:
        c.post("/api/v1/pipelines", json={"description": "to decode via the schemas topic"})
    from tests.harness import wait_for
    records = wait_for(lambda: read_topic(system.settings, system.topic("pipelines.events.v1")),
                       what="events")
    assert all(decode(m.value(), by_fp)["envelope"]["message_id"] for m in records)
