"""The declared topology is what exists in Kafka and what the running processors subscribe to."""
import pytest

from services.core.avro import SchemaCatalog
from services.core.kafka import admin_client
from services.processes import group_assignments
from tests.harness import unique_prefix
from topology.model import Topic, Topology, load_topology
from topology.ops import apply, check

pytestmark = pytest.mark.integration


def test_the_committed_topology_passes_check():
    assert check(load_topology(), set(SchemaCatalog().by_name)) == []


def test_check_reports_missing_schema_orphan_consumer_and_broken_copartitioning():
    topo = load_topology()
    topics = dict(topo.topics)
    t = topics["runs.events.v1"]
    topics["runs.events.v1"] = Topic(t.name, 4, t.key, ("aietl.runs.v1.Nope",), -1, "delete",
                                     copartition="pipelines")
    topics["orphan.v1"] = Topic("orphan.v1", 1, "k", (), -1, "delete")
    bad = Topology(topics, dict(topo.processors))
    from topology.model import Processor
    bad.processors["reader"] = Processor("reader", ("orphan.v1",), ())
    problems = check(bad, set(SchemaCatalog().by_name))
    assert any("aietl.runs.v1.Nope has no .avsc" in p for p in problems)
    assert any("orphan.v1 is consumed" in p for p in problems)
    assert any("partition counts differ" in p for p in problems)


def test_apply_creates_every_topic_with_its_config_and_is_idempotent(stack_settings):
    prefix = unique_prefix("topo")
    admin = admin_client(stack_settings)
    topo = load_topology()
    first = apply(topo, admin, prefix, log=lambda _: None)
    assert set(first.values()) == {"created"}
    assert set(first) == {prefix + n for n in topo.all_topics()}
    second = apply(topo, admin, prefix, log=lambda _: None)
    assert set(second.values()) == {"unchanged"}
    meta = admin.list_topics(timeout=10).topics
    from confluent_kafka.admin import ConfigResource, ResourceType

    for name, t in topo.all_topics().items():
        assert len(meta[prefix + name].partitions) == t.partitions
        res = ConfigResource(ResourceType.TOPIC, prefix + name)
        conf = admin.describe_configs([res])[res].result(10)
        assert conf["cleanup.policy"].value == t.cleanup
    res = ConfigResource(ResourceType.TOPIC, prefix + "pipelines.events.v1")
    assert admin.describe_configs([res])[res].result(10)["retention.ms"].value == "-1"


def test_running_processors_subscribe_exactly_to_what_the_topology_declares(system):
    topo = load_topology()
    for proc in topo.processors.values():
        if not proc.is_stream_processor:
            continue
        members = group_assignments(system.settings, proc.name)
        assert members, f"{proc.name} has no stable consumer group"
        subscribed = set().union(*members.values())
        assert subscribed == {system.topic(t) for t in proc.consumes}, proc.name
