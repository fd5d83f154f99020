"""FastAPI app factory: a thin gateway turning HTTP requests into commands and reading the read model."""
from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Optional

from fastapi import FastAPI

from gateway_api import audit, problems
from gateway_api.kafka_producer import DELIVERY_TIMEOUT_S, AsyncProducer
from gateway_api.middleware import BodyLimits, JsonBodyByDefault
from gateway_api.routers import audit as audit_routes
from gateway_api.routers import catalog, connections, health, hooks, keys, lifecycle, llm, pipelines, runs
from services.core.avro import AvroCodec
from services.core.messages import Message
from services.core.settings import Settings
from services.projector.readmodel import Keys, namespace


@dataclass
class Deps:
    settings: Settings
    codec: AvroCodec
    producer: AsyncProducer
    admin: Any
    redis: Any
    keys: Keys

    async def send_command(self, cmd: Message) -> None:
        await self.producer.send(self.settings.topic("pipelines.commands.v1"), cmd.pipeline_id.encode(),
                                 self.codec.encode(cmd.name, cmd.to_record()),
                                 [("type", cmd.name.encode()), ("message_id", cmd.message_id.encode()),
                                  *audit.command_headers()])


def _redis(settings: Settings):
    """A Redis client that heals itself: bounded connects and reads (a down Redis answers 503 quickly), and a
    command that meets a connection broken by a Redis restart is retried once on a fresh connection."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    return aioredis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0,
                             retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                             retry_on_error=[ConnectionError, TimeoutError], health_check_interval=15)


def create_app(settings: Settings, codec: Optional[AvroCodec] = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from services.core.avro import build_codec
        from services.core.kafka import admin_client, producer

        timeout_ms = int(DELIVERY_TIMEOUT_S * 1000)
        deps = Deps(settings=settings, codec=codec or build_codec(settings.schema_registry_url),
                    producer=AsyncProducer(producer(settings, **{"message.timeout.ms": timeout_ms})),
                    admin=admin_client(settings), redis=_redis(settings), keys=Keys(namespace(settings.topic_prefix)))
        app.state.deps = deps
        try:
            yield
        finally:
            deps.producer.close()
            await deps.redis.aclose()

    app = FastAPI(title="aietl", version="0.1.0", lifespan=lifespan,
                  description="Turn a sentence into a validated, versioned, event-sourced data pipeline. "
                              "Commands are accepted with 202 and applied asynchronously; read state "
                              "and follow events under /api/v1/pipelines/{id}. Lifecycle commands (deploy, "
                              "rollback, pause, resume, delete), run requests and cancellations wait briefly "
                              "for the pipeline's verdict: 200/202 when accepted, 409 with the reason when "
                              "refused. Deployed webhook pipelines run on signed POSTs to /api/v1/hooks/{id}. "
                              "Every route but /healthz, /readyz and the signed webhook needs an API key "
                              "(Authorization: Bearer <key>; `aietl keys create`) acting for one tenant.")
    app.add_middleware(JsonBodyByDefault)
    app.add_middleware(BodyLimits)  # bodies are bounded before anything reads them
    app.add_middleware(audit.RequestContext)  # outermost: every answer, a 413 too, carries its request id
    problems.install(app)
    app.include_router(health.router)
    app.include_router(pipelines.router)
    app.include_router(lifecycle.router)
    app.include_router(runs.router)
    app.include_router(hooks.router)
    app.include_router(llm.router)
    app.include_router(audit_routes.router)
    app.include_router(connections.router)
    app.include_router(catalog.router)
    app.include_router(keys.router)
    return app
