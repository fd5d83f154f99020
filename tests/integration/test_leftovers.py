"""Tests leave nothing behind: a removed deployment's topics, consumer groups and Redis keys are gone."""
from __future__ import annotations

import redis
from confluent_kafka import Consumer

from services.connectors.registry import build_registry
from services.core.kafka import admin_client
from services.core.settings import load_settings
from tests.harness import new_deployment, prepare_topics
from tests.support.cleanup import PREFIXES, leftovers
from services.core.kafka_auth import client_conf


def _topics_of(settings, prefix):
    return [t for t in admin_client(settings).list_topics(timeout=10).topics if t.startswith(prefix)]


def test_removing_a_deployment_deletes_its_topics_groups_and_keys_and_nothing_of_another():
    base = load_settings()
    gone, kept = new_deployment(base, "clean", []), new_deployment(base, "keep", [])
    r = redis.Redis.from_url(base.redis_url)
    registry = build_registry(base)
    try:
        for dep in (gone, kept):
            prepare_topics(dep.settings)
            r.set(f"{dep.settings.topic_prefix}rm:probe", "1")
            registry.create(dep.settings.tenant_id, "probe", "sqlite", {"path": "probe.db"})
        group = f"{gone.settings.topic_prefix}probe-group"
        c = Consumer({**client_conf(base), "group.id": group})
        c.subscribe([gone.topic("pipelines.events.v1")])
        c.poll(3)
        c.close()
        assert _topics_of(base, gone.settings.topic_prefix)

        gone.remove()

        assert leftovers(base, [gone.settings.topic_prefix]) == []
        assert r.keys(f"{gone.settings.topic_prefix}*") == []
        groups = {g.group_id for g in admin_client(base).list_consumer_groups(request_timeout=10).result().valid}
        assert group not in groups
        assert registry.list(gone.settings.tenant_id) == []
        assert gone.settings.topic_prefix not in PREFIXES
        # The other deployment is untouched.
        assert _topics_of(base, kept.settings.topic_prefix)
        assert r.get(f"{kept.settings.topic_prefix}rm:probe") == b"1"
        assert [c["name"] for c in registry.list(kept.settings.tenant_id)] == ["probe"]
    finally:
        kept.remove()
        r.close()
