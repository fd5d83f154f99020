"""Is every declared processor running? Live members in each consumer group, and the lag per group.

Read by the gateway's /readyz and by `aietl status --json`: a deployment is ready only when each processor
it runs (topology/topology.yaml, narrowed by settings.processors) has members in its consumer group.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from services.core.settings import Settings

# Group states in which the group has members that are (or are about to be) consuming.
LIVE_STATES = {"STABLE", "PREPARING_REBALANCE", "COMPLETING_REBALANCE"}


@dataclass(frozen=True)
class GroupHealth:
    processor: str
    group: str
    state: str
    members: int
    lag: Optional[int]  # messages behind the end of the topics it consumes; None when it cannot be read

    @property
    def live(self) -> bool:
        return self.members > 0 and self.state in LIVE_STATES

    def to_dict(self) -> dict:
        return {**asdict(self), "live": self.live}


def expected_processors(settings: Settings) -> list[str]:
    """The stream processors this deployment must run: settings.processors, else every declared one."""
    from topology.model import load_topology

    declared = [p.name for p in load_topology().processors.values() if p.is_stream_processor]
    if settings.processors is None:
        return declared
    wanted = [p.strip() for p in settings.processors.split(",") if p.strip()]
    return [p for p in wanted if p in declared]


# librdkafka's own request timeout stays long: an admin request it times out while a coordinator lookup is
# still under way can abort the whole process (an assertion in rd_kafka_enq_once_del_source_return, seen
# in the gateway under load with 3 s). The caller waits at most `timeout` and abandons the futures instead.
REQUEST_TIMEOUT_S = 30.0


def processor_health(settings: Settings, admin, processors: list[str], timeout: float = 8.0) -> list[GroupHealth]:
    """One describe for all groups, then committed offsets and end offsets for the lag (blocking calls)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec
    from topology.model import load_topology

    if not processors:
        return []
    topology = load_topology()
    groups = {p: f"{settings.topic_prefix}{p}" for p in processors}
    described = admin.describe_consumer_groups(list(groups.values()), request_timeout=REQUEST_TIMEOUT_S)
    partitions = [TopicPartition(settings.topic(t), i) for p in processors
                  for t in topology.processors[p].consumes for i in range(topology.topics[t].partitions)]
    ends = {}
    if partitions:
        futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions},
                                     request_timeout=REQUEST_TIMEOUT_S)
        for tp, fut in futures.items():
            try:
                ends[(tp.topic, tp.partition)] = fut.result(timeout).offset
            except Exception:  # a topic that is not there yet: no lag to report for it
                pass
    out = []
    for p, group in groups.items():
        desc = described[group].result(timeout)
        state = str(desc.state).rsplit(".", 1)[-1]
        # A group that does not exist has no committed offsets to ask its coordinator for.
        lag = None if state == "DEAD" else _lag(admin, group, p, settings, topology, ends, timeout)
        out.append(GroupHealth(p, group, state, len(desc.members or ()), lag))
    return out


def _lag(admin, group: str, processor: str, settings: Settings, topology, ends: dict, timeout: float):
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    tps = [TopicPartition(settings.topic(t), i) for t in topology.processors[processor].consumes
           for i in range(topology.topics[t].partitions)]
    if not tps:
        return 0
    try:
        committed = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, tps)], request_timeout=REQUEST_TIMEOUT_S)[group].result(timeout)
    except Exception:  # the group has never committed (or the broker is busy): unknown, not zero
        return None
    lag = 0
    for tp in committed.topic_partitions:
        end = ends.get((tp.topic, tp.partition))
        if end is None:
            return None
        lag += max(0, end - max(tp.offset, 0))  # no commit yet: everything on the partition is behind
    return lag
