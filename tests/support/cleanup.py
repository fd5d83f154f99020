"""Removing what test deployments leave on the shared stack: topics, consumer groups, ACLs and Redis keys.

Every test prefix is made by :func:`tests.harness.unique_prefix`, which records it here; whatever a test
did not remove itself is removed at the end of the session (tests/conftest.py), so the broker after
``make test`` holds only the platform's own topics. Only prefixes made in this session are touched: other
sessions may be running against the same stack.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.core.settings import Settings

PREFIXES: set[str] = set()


@dataclass
class Removed:
    topics: int = 0
    groups: int = 0
    keys: int = 0
    connections: int = 0
    acls: int = 0
    api_keys: int = 0


def _remove_connections(settings: Settings, prefixes) -> int:
    """Each test deployment is its own tenant (its prefix without the dot): drop its registered connections."""
    from services.connectors.registry import build_registry

    registry = build_registry(settings)
    n = 0
    for prefix in prefixes:
        tenant = prefix.rstrip(".")
        for conn in registry.list(tenant):
            registry.delete(tenant, conn["name"])
            n += 1
    return n


def _remove_api_keys(settings: Settings, prefixes) -> int:
    """The API keys of each test deployment's tenant (tests.harness gives every deployment one), and the
    secret generations of the webhooks it rotated."""
    from services.identity.keys import build_store
    from services.triggers.hook_store import build_hook_store

    store = build_store(settings)
    tenants = [prefix.rstrip(".") for prefix in prefixes]
    build_hook_store(settings).forget(tenants)
    return store.delete([k.prefix for tenant in tenants for k in store.list(tenant)])


def remove_prefix_leftovers(settings: Settings, prefixes) -> Removed:
    """Delete every topic, consumer group and Redis key whose name starts with one of ``prefixes``."""
    import redis

    from services.core.kafka import super_admin_client
    from topology.acls import remove_prefix

    prefixes = tuple(p for p in prefixes if p)
    out = Removed()
    if not prefixes:
        return out
    admin = super_admin_client(settings)
    out.acls = sum(remove_prefix(admin, p) for p in prefixes)
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    for fut in (admin.delete_topics(topics, operation_timeout=30).values() if topics else ()):
        fut.result()
    out.topics = len(topics)
    groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid
              if g.group_id.startswith(prefixes)]
    if groups:
        for fut in admin.delete_consumer_groups(groups, request_timeout=30).values():
            try:
                fut.result()
            except Exception:  # a group with live members (a worker still stopping) cannot be deleted
                continue
            out.groups += 1
    out.connections = _remove_connections(settings, prefixes)
    out.api_keys = _remove_api_keys(settings, prefixes)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for prefix in prefixes:
            batch = list(client.scan_iter(f"{prefix}*", count=1000))
            for i in range(0, len(batch), 500):
                out.keys += client.delete(*batch[i:i + 500])
    finally:
        client.close()
    return out


def leftovers(settings: Settings, prefixes) -> list[str]:
    """Topics and ACLs still named by one of ``prefixes`` (what the end-of-session check reports)."""
    from services.core.kafka import super_admin_client
    from topology.acls import in_broker

    prefixes = tuple(p for p in prefixes if p)
    if not prefixes:
        return []
    admin = super_admin_client(settings)
    acls = [f"ACL {a.line()}" for p in prefixes for a in in_broker(admin, p)]
    return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)) + acls
