"""Composition root: builds settings, codec, clients and processors. Nothing happens at import time."""
from __future__ import annotations

from typing import Callable

from services.core.settings import Settings


def _codec(settings: Settings):
    from services.core.avro import build_codec

    return build_codec(settings.schema_registry_url)


def _pipeline_aggregate(settings: Settings):
    from services.pipeline_aggregate.app import build

    return build(settings, _codec(settings))


def _projector(settings: Settings):
    import redis

    from services.projector.app import build

    return build(settings, _codec(settings), redis.Redis.from_url(settings.redis_url))


def _llm_router(settings: Settings):
    from services.llm_router.app import build

    def router_factory():
        import redis.asyncio as aioredis

        from services.llm_router.router import Router

        return Router.from_settings(settings.llm_scoped(), aioredis.from_url(settings.redis_url))

    return build(settings, _codec(settings), router_factory)


def _memory(settings: Settings):
    from services.agents.memory import DraftMemory

    name = f"{settings.topic_prefix}drafts"
    return DraftMemory.local(settings.state_dir / "qdrant" / name, name, url=getattr(settings, "qdrant_url", None))


def _agent(build_spec: Callable[[Settings], object]) -> Callable[[Settings], object]:
    def factory(settings: Settings):
        from services.agents.runtime import build_agent_app, warm

        spec = build_spec(settings)
        warm(spec)  # at start, before the worker joins its group: the first draft finds it loaded
        return build_agent_app(settings, _codec(settings), spec)
    return factory


def _sources(settings: Settings):
    from services.agents.sources import SourceAccess
    from services.connectors.registry import build_registry

    return SourceAccess(build_registry(settings))


def _planner_spec(settings: Settings):
    from services.agents import planner
    from services.connectors.catalog import catalog_from_settings
    from services.llm_router.router import provider_configs_from_json

    plan_chain = [c for c in provider_configs_from_json(settings.llm_providers_json) if c.answers("plan")]
    return planner.build(memory=_memory(settings), connections=_sources(settings).default_connections,
                         catalog=catalog_from_settings(settings).get_or_none, warm_tenant=settings.tenant_id,
                         model_plans=any(not c.is_builtin for c in plan_chain))


def _sql_expert_spec(settings: Settings):
    from services.agents import sql_expert

    sources = _sources(settings)
    return sql_expert.build(source_columns=sources.columns_or_none, source_ranges=sources.value_ranges)


def _schema_analyst_spec(settings: Settings):
    from services.agents import schema_analyst

    return schema_analyst.build(_sources(settings))


def _qa_validator_spec(settings: Settings):
    from services.agents import qa_validator

    return qa_validator.build(_sources(settings))


def _python_coder_spec(settings: Settings):
    from services.agents import python_coder

    return python_coder.build()


def _reflector_spec(settings: Settings):
    from services.agents import reflector

    return reflector.build()


def _executor(settings: Settings):
    import redis

    from services.connectors.registry import build_registry
    from services.executor.app import build
    from services.executor.leases import Leases

    leases = Leases(redis.Redis.from_url(settings.redis_url), settings.topic_prefix, settings.instance_name,
                    settings.executor_lease_s)
    return build(settings, _codec(settings), build_registry(settings), leases)


def _scheduler(settings: Settings):
    from services.scheduler.app import build

    return build(settings, _codec(settings))


def _kafka_trigger(settings: Settings):
    from services.kafka_trigger.app import build

    return build(settings, _codec(settings))


def _metrics_sink(settings: Settings):
    from services.metrics_sink.app import build

    return build(settings, _codec(settings))


# Every stream processor `aietl worker NAME` can run; names match topology/topology.yaml.
WORKERS: dict[str, Callable[[Settings], object]] = {
    "pipeline-aggregate": _pipeline_aggregate,
    "projector": _projector,
    "llm-router": _llm_router,
    "planner": _agent(_planner_spec),
    "sql-expert": _agent(_sql_expert_spec),
    "python-coder": _agent(_python_coder_spec),
    "schema-analyst": _agent(_schema_analyst_spec),
    "qa-validator": _agent(_qa_validator_spec),
    "reflector": _agent(_reflector_spec),
    "executor": _executor,
    "scheduler": _scheduler,
    "kafka-trigger": _kafka_trigger,
    "metrics-sink": _metrics_sink,
}


def build_worker(name: str, settings: Settings):
    try:
        factory = WORKERS[name]
    except KeyError:
        raise ValueError(f"unknown worker {name!r}; known: {', '.join(sorted(WORKERS))}") from None
    return factory(settings)
