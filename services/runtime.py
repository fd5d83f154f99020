"""Composition root: builds settings, codec, clients and processors. Nothing happens at import time."""
from __future__ import annotations

from typing import Callable

from services.core.settings import Settings


def _pipeline_aggregate(settings: Settings):
    from services.core.avro import build_codec
    from services.pipeline_aggregate.app import build

    return build(settings, build_codec(settings.schema_registry_url))


def _projector(settings: Settings):
    import redis

    from services.core.avro import build_codec
    from services.projector.app import build

    return build(settings, build_codec(settings.schema_registry_url), redis.Redis.from_url(settings.redis_url))


# Every stream processor `aietl worker NAME` can run; names match topology/topology.yaml.
WORKERS: dict[str, Callable[[Settings], object]] = {
    "pipeline-aggregate": _pipeline_aggregate,
    "projector": _projector,
}


def build_worker(name: str, settings: Settings):
    try:
        factory = WORKERS[name]
    except KeyError:
        raise ValueError(f"unknown worker {name!r}; known: {', '.join(sorted(WORKERS))}") from None
    return factory(settings)
