"""The declared topology: topics and processors, loaded from ``topology/topology.yaml``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

DEFAULT_FILE = Path(__file__).resolve().parent / "topology.yaml"
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    name: str  # logical name, without prefix
    partitions: int
    key: str
    values: tuple[str, ...]
    retention_ms: int
    cleanup: str
    dlq: bool = False
    copartition: Optional[str] = None
    external: bool = False  # written by something outside aietl (e.g. a user's source topic)
    format: str = "avro"

    def config(self) -> dict[str, str]:
        conf = {"cleanup.policy": self.cleanup, "retention.ms": str(self.retention_ms)}
        if self.cleanup == "compact":
            conf.pop("retention.ms")
        return conf


@dataclass(frozen=True)
class Processor:
    name: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    kind: str = "faust"
    reads: tuple[str, ...] = ()  # logs read from the start outside the consumer group
    groups: tuple[str, ...] = ()  # further consumer groups it names itself ("{prefix}" replaced)
    describe_all: bool = False  # may describe every topic and processor group (readiness), read none
    serves_connections: bool = False  # reads/writes the topics shared with connections

    @property
    def is_stream_processor(self) -> bool:
        return self.kind == "faust"


@dataclass
class Topology:
    topics: dict[str, Topic]
    processors: dict[str, Processor] = field(default_factory=dict)

    def all_topics(self) -> dict[str, Topic]:
        """Declared topics plus their dead-letter topics (same partitions, kept forever)."""
        out = dict(self.topics)
        for t in self.topics.values():
            if t.dlq:
                name = t.name + DLQ_SUFFIX
                out[name] = Topic(name, t.partitions, t.key, (), -1, "delete", format="any")
        return out

    def consumers_of(self, topic: str) -> list[str]:
        return [p.name for p in self.processors.values() if topic in p.consumes]

    def producers_of(self, topic: str) -> list[str]:
        return [p.name for p in self.processors.values() if topic in p.produces]


def load_topology(path: Optional[Path] = None) -> Topology:
    raw = yaml.safe_load(Path(path or DEFAULT_FILE).read_text())
    topics = {}
    for name, spec in (raw.get("topics") or {}).items():
        topics[name] = Topic(
            name=name, partitions=int(spec["partitions"]), key=spec["key"],
            values=tuple(spec.get("values") or ()), retention_ms=int(spec.get("retention_ms", -1)),
            cleanup=spec.get("cleanup", "delete"), dlq=bool(spec.get("dlq", False)),
            copartition=spec.get("copartition"), external=bool(spec.get("external", False)),
            format=spec.get("format", "avro"))
    processors = {}
    for name, spec in (raw.get("processors") or {}).items():
        processors[name] = Processor(name=name, consumes=tuple(spec.get("consumes") or ()),
                                     produces=tuple(spec.get("produces") or ()),
                                     kind=spec.get("kind", "faust"), reads=tuple(spec.get("reads") or ()),
                                     groups=tuple(spec.get("groups") or ()),
                                     describe_all=bool(spec.get("describe_all", False)),
                                     serves_connections=bool(spec.get("serves_connections", False)))
    return Topology(topics, processors)
