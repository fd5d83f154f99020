"""The closed command bus, attacked as an outsider and as a compromised processor would.

Findings replayed (issue 10): a command written straight onto Kafka without credentials was accepted; a
command for another tenant's pipeline was applied. Now the broker authenticates every client (SASL/SCRAM),
authorizes it by the ACLs generated from topology/ (topology/acls.py), and the aggregate rejects a command
whose tenant is not the pipeline's.
"""
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from services.core.avro import build_codec
from services.core.eventlog import LogReader
from services.core.kafka_auth import client_conf
from services.core.messages import Message, new_envelope
from tests.harness import new_deployment, wait_for
from tests.pipelines import send_command

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dep(stack_settings):
    d = new_deployment(stack_settings, "bus", ["pipeline-aggregate"]).start()
    yield d
    d.remove()


def _command(dep, short_name: str, pipeline_id: str, payload: dict, tenant: str) -> tuple[bytes, list]:
    codec = build_codec(dep.settings.schema_registry_url)
    name = f"aietl.pipelines.v1.{short_name}"
    msg = Message(name, new_envelope(name, tenant_id=tenant, actor="user:mallory", pipeline_id=pipeline_id), payload)
    return codec.encode(name, msg.to_record()), [("type", name.encode()), ("message_id", msg.message_id.encode())]


def _produce(conf: dict, topic: str, value: bytes, headers=None) -> KafkaError:
    """Produce one record and return its delivery error (None when the broker accepted it)."""
    result = []
    p = Producer({**conf, "message.timeout.ms": 8000, "enable.idempotence": False, "acks": "all"})
    p.produce(topic, key=b"k", value=value, headers=headers or [],
              on_delivery=lambda err, _msg: result.append(err))
    p.flush(15)
    assert result, "no delivery report"
    return result[0]


def test_a_producer_without_credentials_cannot_write_a_command(dep):
    value, headers = _command(dep, "CreatePipeline", str(uuid.uuid4()),
                              {"description": "copy orders", "name": None, "labels": {}}, dep.settings.tenant_id)
    topic = dep.topic("pipelines.commands.v1")
    plain = _produce({"bootstrap.servers": dep.settings.kafka_bootstrap}, topic, value, headers)
    assert plain is not None, "the broker accepted a command from a client that did not authenticate"
    wrong = {**client_conf(dep.settings, "gateway"), "sasl.password": "guessed"}
    err = _produce(wrong, topic, value, headers)
    assert err is not None and err.code() in (KafkaError._AUTHENTICATION, KafkaError._MSG_TIMED_OUT), err
    # Nothing reached the log.
    reader = LogReader(dep.settings, topic)
    try:
        assert not list(reader.read({}))
    finally:
        reader.close()


@pytest.mark.parametrize("principal", ["executor", "metrics-sink", "subscriber"])
def test_a_processor_that_does_not_produce_commands_is_refused_by_the_acls(dep, principal):
    value, headers = _command(dep, "PausePipeline", str(uuid.uuid4()), {}, dep.settings.tenant_id)
    err = _produce(client_conf(dep.settings, principal), dep.topic("pipelines.commands.v1"), value, headers)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_the_gateway_cannot_read_the_events_log(dep):
    topic = dep.topic("pipelines.events.v1")
    c = Consumer({**client_conf(dep.settings, "gateway"), "group.id": f"{topic}.reader"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        seen = []

        def refused():
            msg = c.poll(1.0)
            if msg is not None:
                assert msg.error() is not None, "the gateway read a record of the events log"
                seen.append(msg.error().code())
            return KafkaError.TOPIC_AUTHORIZATION_FAILED in seen

        wait_for(refused, timeout=30, what="the broker refusing the fetch")
        # Its group is refused too (it has none on the bus); nothing else may happen.
        assert set(seen) <= {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}, seen
    finally:
        c.close()


def test_the_acls_in_the_broker_are_the_topologys(dep):
    from services.core.kafka import super_admin_client
    from topology.acls import generate, in_broker
    from topology.model import load_topology

    wanted = set(generate(load_topology(), dep.settings.topic_prefix))
    have = {a for a in in_broker(super_admin_client(dep.settings), "")
            if a.name.startswith(dep.settings.topic_prefix) or a in wanted}
    assert have == wanted


def test_a_command_for_another_tenants_pipeline_is_rejected_by_the_aggregate(dep):
    """Written with valid credentials (a processor that may produce commands), for a tenant not the pipeline's."""
    pid = str(uuid.uuid4())
    send_command(dep, "CreatePipeline", pid, {"description": "copy orders to ClickHouse", "name": None,
                                              "labels": {}})
    value, headers = _command(dep, "DeletePipeline", pid, {}, "mallory")
    assert _produce(client_conf(dep.settings, "scheduler"), dep.topic("pipelines.commands.v1"), value,
                    headers) is None
    codec = build_codec(dep.settings.schema_registry_url)

    def events():
        reader = LogReader(dep.settings, dep.topic("pipelines.events.v1"))
        try:
            out = [Message.from_record(*codec.decode(r.value)) for r in reader.read({})]
        finally:
            reader.close()
        return [e for e in out if e.pipeline_id == pid] if len(out) >= 2 else None

    log = wait_for(events, timeout=60, what="the aggregate's verdict")
    assert [e.short_name for e in log] == ["PipelineRequested", "CommandRejected"]
    assert log[1].payload["error_code"] == "tenant_mismatch"
    assert log[1].payload["command_type"] == "aietl.pipelines.v1.DeletePipeline"
