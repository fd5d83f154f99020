"""Kafka ACLs generated from the topology: the one source of who may read and write what on the bus.

For a topic prefix ``X`` and each processor ``P`` (its principal is ``User:P``):
- every topic ``P`` consumes: READ + DESCRIBE on ``X<topic>``, READ on the group ``X<P>`` (the Faust app id
  or the aggregate's loop); every topic it ``reads`` outside its group (a log read from the start, e.g.
  the aggregate's own events): READ + DESCRIBE on the topic and READ on the ``X<topic>.reader`` group
  (services.core.eventlog.LogReader);
- every topic it produces: WRITE + DESCRIBE (idempotent producers need nothing more since Kafka 2.8);
- ``groups``: further consumer groups it names itself (``{prefix}`` is replaced; ``name*`` is a prefixed
  resource, e.g. the executor's one group per streaming pipeline), READ;
- ``describe_all`` (the gateway's /readyz): DESCRIBE on every topic and every processor's group, so it can
  see lag, never read a record.
Processors that serve connections (``serves_connections``: the executor reads and writes users' topics,
kafka-trigger reads them) may use any topic and group that is not the platform's: an ALLOW on ``*`` plus,
for every declared topic and processor group under the prefix, a DENY of each operation the topology
does not grant them (a DENY wins over an ALLOW in Kafka). Nothing else is allowed (the broker runs with
``allow.everyone.if.no.acl.found=false``); ``admin``, ``broker`` and ``controller`` are super users.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from topology.model import Topology


@dataclass(frozen=True, order=True)
class Acl:
    principal: str  # without "User:"
    resource: str  # "topic" | "group"
    pattern: str  # "literal" | "prefixed"
    name: str
    operation: str  # "read" | "write" | "describe"
    permission: str = "allow"  # "allow" | "deny"

    def line(self) -> str:
        return (f"User:{self.principal} {self.permission.upper()} {self.operation.upper()} {self.resource} "
                f"{self.pattern}:{self.name}")


def generate(topo: Topology, prefix: str) -> list[Acl]:
    acls: set[Acl] = set()
    for p in topo.processors.values():
        for t in p.consumes:
            acls |= {Acl(p.name, "topic", "literal", prefix + t, op) for op in ("read", "describe")}
            acls.add(Acl(p.name, "group", "literal", prefix + p.name, "read"))
        for t in p.reads:
            acls |= {Acl(p.name, "topic", "literal", prefix + t, op) for op in ("read", "describe")}
            acls.add(Acl(p.name, "group", "literal", f"{prefix}{t}.reader", "read"))
        for t in p.produces:
            acls |= {Acl(p.name, "topic", "literal", prefix + t, op) for op in ("write", "describe")}
        for g in p.groups:
            g = g.replace("{prefix}", prefix)
            kind = "prefixed" if g.endswith("*") else "literal"
            acls.add(Acl(p.name, "group", kind, g.rstrip("*"), "read"))
        if p.describe_all:
            acls |= {Acl(p.name, "topic", "literal", prefix + t, "describe") for t in topo.all_topics()}
            acls |= {Acl(p.name, "group", "literal", prefix + q.name, "describe")
                     for q in topo.processors.values() if q.is_stream_processor}
    for p in topo.processors.values():
        if not p.serves_connections:
            continue
        granted = {(a.resource, a.name, a.operation) for a in acls if a.principal == p.name}
        acls |= {Acl(p.name, "topic", "literal", "*", op) for op in ("read", "write", "describe")}
        acls.add(Acl(p.name, "group", "literal", "*", "read"))
        for t in topo.all_topics():
            acls |= {Acl(p.name, "topic", "literal", prefix + t, op, "deny") for op in ("read", "write")
                     if ("topic", prefix + t, op) not in granted}
        platform_groups = {prefix + q.name for q in topo.processors.values()}
        platform_groups |= {f"{prefix}{t}.reader" for t in topo.all_topics()}
        acls |= {Acl(p.name, "group", "literal", g, "read", "deny") for g in platform_groups
                 if ("group", g, "read") not in granted}
    return sorted(acls)


def principals(topo: Topology) -> list[str]:
    return sorted(topo.processors)


# -- the broker ------------------------------------------------------------------------------------------

def _binding(acl: Acl):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)

    return AclBinding(ResourceType[acl.resource.upper()], acl.name, ResourcePatternType[acl.pattern.upper()],
                      f"User:{acl.principal}", "*", AclOperation[acl.operation.upper()],
                      AclPermissionType[acl.permission.upper()])


def _from_binding(b) -> Optional[Acl]:
    if not b.principal.startswith("User:"):
        return None
    return Acl(b.principal[5:], b.restype.name.lower(), b.resource_pattern_type.name.lower(), b.name,
               b.operation.name.lower(), b.permission_type.name.lower())


def in_broker(admin, prefix: str, timeout: float = 30.0) -> list[Acl]:
    """The ACLs on resources under ``prefix`` (the deployment's topics and groups; "" for all)."""
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)

    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                           AclPermissionType.ANY)
    found = admin.describe_acls(flt, request_timeout=timeout).result(timeout)
    return sorted(a for a in map(_from_binding, found) if a is not None and a.name.startswith(prefix))


def ensure_users(admin, settings, names: Iterable[str], timeout: float = 30.0) -> None:
    """SCRAM-SHA-512 users for the local stack's processors (passwords derived: services.core.kafka_auth)."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    from services.core.kafka_auth import password

    ups = [UserScramCredentialUpsertion(n, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                        password(settings, n).encode()) for n in names]
    for fut in admin.alter_user_scram_credentials(ups, request_timeout=timeout).values():
        fut.result(timeout)


def apply(admin, wanted: list[Acl], prefix: str, log: Callable[[str], None] = print,
          timeout: float = 30.0) -> tuple[int, int]:
    """Make the broker's ACLs under ``prefix`` exactly ``wanted``: (created, deleted)."""
    # The wildcard ACLs are shared by every prefix: compared, never removed here.
    have = set(in_broker(admin, "", timeout))
    missing = [a for a in wanted if a not in have]
    extra = sorted(a for a in have - set(wanted) if a.name.startswith(prefix))
    if missing:
        for fut in admin.create_acls([_binding(a) for a in missing], request_timeout=timeout).values():
            fut.result(timeout)
    if extra:
        delete(admin, extra, timeout)
    if missing or extra:
        log(f"ACLs under {prefix!r}: {len(missing)} created, {len(extra)} removed")
    return len(missing), len(extra)


def delete(admin, acls: list[Acl], timeout: float = 30.0) -> None:
    from confluent_kafka.admin import AclBindingFilter

    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                                b.permission_type) for b in map(_binding, acls)]
    for fut in admin.delete_acls(filters, request_timeout=timeout).values():
        fut.result(timeout)


def remove_prefix(admin, prefix: str, timeout: float = 30.0) -> int:
    """Delete every ACL on resources under ``prefix`` (a test deployment's teardown)."""
    acls = in_broker(admin, prefix, timeout)
    if acls:
        delete(admin, acls, timeout)
    return len(acls)


def setup_bus(settings, topo: Topology, admin, log: Callable[[str], None] = print) -> int:
    """Users (local stack only) and the ACLs for ``settings.topic_prefix``; returns how many ACLs hold."""
    if not settings.kafka_external:
        ensure_users(admin, settings, principals(topo))
    wanted = generate(topo, settings.topic_prefix)
    apply(admin, wanted, settings.topic_prefix, log=log)
    return len(wanted)
