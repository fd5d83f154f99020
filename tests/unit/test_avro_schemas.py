"""Every schema parses, every message type round-trips, framing is the documented one."""
import json
import uuid
from datetime import datetime, timezone

import fastavro
import pytest

from services.core.avro import AvroCodec, AvroCodecError, SchemaCatalog, SINGLE_OBJECT_MARKER
from services.core.messages import Message, new_envelope
from tests.unit.samples import SAMPLES


@pytest.fixture(scope="module")
def catalog():
    return SchemaCatalog()


def test_every_schema_file_parses_and_is_named_after_its_full_name(catalog):
    assert catalog.by_name, "no schemas found"
    for schema in catalog:
        raw = json.loads(schema.path.read_text())
        assert f"{raw['namespace']}.{raw['name']}" == schema.name == schema.path.name[:-5]
        assert schema.path.parent.name == "v1"


def test_every_message_type_has_a_validating_sample(catalog):
    embedded = {"aietl.common.v1.Envelope", "aietl.common.v1.LlmUsage", "aietl.llm.v1.ChatMessage"}
    messages = [n for n in catalog.by_name if n not in embedded]
    assert sorted(messages) == sorted(SAMPLES), "add a sample for each new message type"
    for name, payload in SAMPLES.items():
        record = {"envelope": new_envelope(name, tenant_id="t1", actor="test", pipeline_id=str(uuid.uuid4())),
                  **payload}
        assert fastavro.validation.validate(record, catalog.get(name).parsed, raise_errors=True)


def test_single_object_encoding_round_trips_with_fingerprint_header(catalog):
    codec = AvroCodec(catalog)
    for name, payload in SAMPLES.items():
        msg = Message(name, new_envelope(name, tenant_id="t1", actor="test", pipeline_id="p1"), payload)
        data = codec.encode(name, msg.to_record())
        assert data[:2] == SINGLE_OBJECT_MARKER
        assert data[2:10] == catalog.get(name).fingerprint
        got_name, got = codec.decode(data)
        assert got_name == name
        assert Message.from_record(got_name, got).payload == payload
        assert got["envelope"]["occurred_at"].tzinfo is not None


def test_decode_rejects_garbage_and_unknown_fingerprints(catalog):
    codec = AvroCodec(catalog)
    with pytest.raises(AvroCodecError, match="neither"):
        codec.decode(b'{"json": true}')
    with pytest.raises(AvroCodecError, match="unknown schema fingerprint"):
        codec.decode(SINGLE_OBJECT_MARKER + b"\x00" * 8 + b"\x02")


def test_encode_rejects_records_that_do_not_match(catalog):
    codec = AvroCodec(catalog)
    with pytest.raises(AvroCodecError, match="does not match"):
        codec.encode("aietl.pipelines.v1.CreatePipeline", {"envelope": {}, "description": 5})


def test_confluent_wire_format_when_a_registry_assigns_ids(catalog):
    from services.core.avro import SchemaIdResolver

    ids = {}

    def register(schema):
        return ids.setdefault(schema.name, len(ids) + 1)

    def fetch(schema_id):
        return next(catalog.get(n).canonical for n, i in ids.items() if i == schema_id)

    codec = AvroCodec(catalog, SchemaIdResolver(register, fetch, catalog))
    name = "aietl.pipelines.v1.PipelineRequested"
    env = new_envelope(name, tenant_id="t", actor="a", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    data = codec.encode(name, {"envelope": env, **SAMPLES[name]})
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == ids[name]
    # A fresh decoder that only knows the registry resolves the id back to our schema.
    fresh = AvroCodec(catalog, SchemaIdResolver(register, fetch, catalog))
    assert fresh.decode(data)[0] == name
