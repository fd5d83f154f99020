"""check / apply / render for the declared topology."""
from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

from topology.model import DLQ_SUFFIX, Topology

COPARTITIONED_REQUIRED = ("pipelines.commands.v1", "pipelines.events.v1", "runs.events.v1")


def check(topo: Topology, schema_names: set[str]) -> list[str]:
    """Return every problem found; an empty list means the topology is sound."""
    problems: list[str] = []
    all_topics = topo.all_topics()
    for t in topo.topics.values():
        for v in t.values:
            if v not in schema_names:
                problems.append(f"topic {t.name}: value schema {v} has no .avsc file")
        if t.partitions < 1:
            problems.append(f"topic {t.name}: partitions must be >= 1")
    for p in topo.processors.values():
        for name in p.consumes + p.produces + p.reads:
            if name not in all_topics:
                problems.append(f"processor {p.name}: topic {name} is not declared")
    for t in all_topics.values():
        if topo.consumers_of(t.name) and not topo.producers_of(t.name) and not t.external:
            problems.append(f"topic {t.name} is consumed by {topo.consumers_of(t.name)} "
                            "but nothing produces it (declare a producer or mark it external)")
    groups: dict[str, set[int]] = defaultdict(set)
    for t in topo.topics.values():
        if t.copartition:
            groups[t.copartition].add(t.partitions)
    for name in COPARTITIONED_REQUIRED:
        t = topo.topics.get(name)
        if t is None:
            problems.append(f"topic {name} must be declared")
        elif t.copartition != "pipelines":
            problems.append(f"topic {name} must be in copartition group 'pipelines'")
    for group, counts in groups.items():
        if len(counts) > 1:
            problems.append(f"copartition group {group}: partition counts differ {sorted(counts)}")
    return problems


def apply(topo: Topology, admin, prefix: str, log: Callable[[str], None] = print,
          timeout: float = 30.0) -> dict[str, str]:
    """Create missing topics and align configs/partitions of existing ones. Idempotent."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, ResourceType

    existing = admin.list_topics(timeout=timeout).topics
    actions: dict[str, str] = {}
    to_create = []
    for t in topo.all_topics().values():
        full = prefix + t.name
        if full not in existing:
            to_create.append(NewTopic(full, num_partitions=t.partitions, replication_factor=1,
                                      config=t.config()))
            actions[full] = "created"
            continue
        have = len(existing[full].partitions)
        if have < t.partitions:
            admin.create_partitions([NewPartitions(full, t.partitions)])[full].result(timeout)
            actions[full] = f"partitions {have}->{t.partitions}"
        elif have > t.partitions:
            raise RuntimeError(f"topic {full} has {have} partitions, more than the declared "
                               f"{t.partitions}; Kafka cannot shrink a topic")
        resource = ConfigResource(ResourceType.TOPIC, full)
        current = admin.describe_configs([resource])[resource].result(timeout)
        wanted = t.config()
        if any(current[k].value != v for k, v in wanted.items()):
            resource = ConfigResource(ResourceType.TOPIC, full, set_config=wanted)
            admin.alter_configs([resource])[resource].result(timeout)
            actions.setdefault(full, "config updated")
        actions.setdefault(full, "unchanged")
    if to_create:
        for name, fut in admin.create_topics(to_create, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                # Another `apply` may have created it between our listing and our request.
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
                actions[name] = "unchanged"
    for name, what in sorted(actions.items()):
        if what != "unchanged":
            log(f"{name}: {what}")
    return actions


def render_mermaid(topo: Topology, prefix: str = "") -> str:
    def node(name: str) -> str:
        return name.replace(".", "_").replace("-", "_")

    lines = ["flowchart LR"]
    for t in topo.all_topics().values():
        shape = f'{node("t_" + t.name)}[("{prefix}{t.name}")]'
        lines.append(f"  {shape}")
    for p in topo.processors.values():
        lines.append(f'  {node("p_" + p.name)}["{p.name}"]')
        for c in p.consumes:
            lines.append(f"  {node('t_' + c)} --> {node('p_' + p.name)}")
        for o in p.produces:
            style = "-.->" if o.endswith(DLQ_SUFFIX) else "-->"
            lines.append(f"  {node('p_' + p.name)} {style} {node('t_' + o)}")
    return "\n".join(lines) + "\n"


def render_dot(topo: Topology, prefix: str = "") -> str:
    lines = ["digraph aietl {", "  rankdir=LR;"]
    for t in topo.all_topics().values():
        lines.append(f'  "t:{t.name}" [label="{prefix}{t.name}", shape=cylinder];')
    for p in topo.processors.values():
        lines.append(f'  "p:{p.name}" [label="{p.name}", shape=box];')
        lines += [f'  "t:{c}" -> "p:{p.name}";' for c in p.consumes]
        lines += [f'  "p:{p.name}" -> "t:{o}";' for o in p.produces]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(topo: Topology, out: Path, prefix: str = "") -> Optional[Path]:
    """SVG through graphviz's `dot` when it is installed; None otherwise."""
    dot = shutil.which("dot")
    if dot is None:
        return None
    svg = subprocess.run([dot, "-Tsvg"], input=render_dot(topo, prefix).encode(), check=True,
                         capture_output=True).stdout
    out.write_bytes(svg)
    return out
