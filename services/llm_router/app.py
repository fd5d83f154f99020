"""llm-router: answers ``CompleteLlmTask`` on ``llm.requests.v1`` with ``LlmTaskCompleted`` or
``LlmTaskFailed`` on ``llm.replies.v1`` (keyed by correlation id, like the request)."""
from __future__ import annotations

import asyncio
import json
import logging
import time

from services.core.avro import AvroCodec
from services.core.dlq import POISON, DeadLetters, record_of
from services.core.faust_app import make_app, topic
from services.core.messages import Message, new_envelope
from services.core.redis_wait import until_redis_answers
from services.core.settings import Settings

log = logging.getLogger("aietl.llm_router")
PROCESSOR = "llm-router"
COMPLETED = "aietl.llm.v1.LlmTaskCompleted"
FAILED = "aietl.llm.v1.LlmTaskFailed"
# Requests handled at once by one router process. Each provider's own limit (max_concurrency) bounds
# what it receives, so a slow local model queues only the requests routed to it.
CONCURRENCY = 8


def to_llm_request(msg: Message):
    from services.llm_router.providers import LlmRequest

    p = msg.payload
    return LlmRequest(task=p["task"], tenant_id=msg.envelope["tenant_id"], prompt_version=p["prompt_version"],
                      complexity=p.get("complexity") or "medium", messages=list(p.get("messages") or []),
                      input=json.loads(p.get("input_json") or "{}"), repair_round=int(p.get("repair_round") or 0),
                      max_tokens=p.get("max_tokens"), correlation_id=msg.envelope["correlation_id"],
                      preferred_provider=p.get("preferred_provider"))


def _reply_envelope(name: str, request: Message) -> dict:
    return new_envelope(name, tenant_id=request.envelope["tenant_id"], pipeline_id=request.pipeline_id,
                        correlation_id=request.envelope["correlation_id"], causation_id=request.message_id,
                        actor="service:llm-router")


def completed(request: Message, result) -> Message:
    usage = {"provider": result.provider, "model": result.model, "tokens_in": int(result.tokens_in),
             "tokens_out": int(result.tokens_out), "cost_usd": float(result.cost_usd),
             "latency_ms": int(result.latency_ms), "cache": result.cache}
    return Message(COMPLETED, _reply_envelope(COMPLETED, request), {
        "task": request.payload["task"], "requester": request.payload["requester"],
        "output_json": json.dumps(result.output, sort_keys=True, ensure_ascii=False),
        "context_json": request.payload.get("context_json") or "{}", "usage": usage,
        "attempts": int(result.attempts), "fallbacks": list(result.fallbacks)})


def failed(request: Message, exc: Exception) -> Message:
    from services.llm_router.contract import ANSWER_REJECTED, PROVIDERS_UNAVAILABLE, rejection_text
    from services.llm_router.providers import AllProvidersFailedError, BudgetExceededError

    code, message = type(exc).__name__, str(exc)
    if isinstance(exc, BudgetExceededError):
        code = "budget_exceeded"
    elif isinstance(exc, AllProvidersFailedError) and exc.rejected:
        code, message = ANSWER_REJECTED, rejection_text(exc.rejection_errors())  # names the fields
    elif isinstance(exc, AllProvidersFailedError):
        code = PROVIDERS_UNAVAILABLE
    return Message(FAILED, _reply_envelope(FAILED, request), {
        "task": request.payload["task"], "requester": request.payload["requester"], "error_code": code,
        "message": message[:2000], "retryable": bool(getattr(exc, "retryable", False)),
        "context_json": request.payload.get("context_json") or "{}"})


async def answer(router, request: Message) -> Message:
    from services.llm_router.providers import LlmError

    try:
        return completed(request, await router.complete(to_llm_request(request)))
    except LlmError as exc:
        log.warning("no answer for %s (%s): %s", request.message_id, request.payload["task"], exc)
        return failed(request, exc)


def build(settings: Settings, codec: AvroCodec, router_factory):
    # A local model's call can take minutes; Faust must not report that as a stuck stream.
    app = make_app(settings, PROCESSOR, stream_processing_timeout=900.0)
    requests = topic(app, settings, "llm.requests.v1")
    replies_topic = settings.topic("llm.replies.v1")
    dead = DeadLetters(settings, PROCESSOR)
    state: dict = {}

    ready = asyncio.Event()

    @app.task
    async def warm_up() -> None:
        # Built in the worker's loop (it owns async clients) at start, and warmed: the first draft after a
        # start must not pay for model loads and pattern compilation.
        started = time.perf_counter()
        state["router"] = router_factory()
        try:
            await state["router"].warm_up()
            log.info("router warmed up in %.2f s", time.perf_counter() - started)
        finally:
            ready.set()

    @app.agent(requests, concurrency=CONCURRENCY)
    async def process(stream):
        async for event in stream.events():
            await ready.wait()
            try:
                request = dead.decode(codec, record_of(event))
                # Redis (caches, budgets, breakers) restarting: answer once it is back, never drop the request.
                reply = await until_redis_answers(lambda: answer(state["router"], request), log,
                                                  f"answering {request.message_id}")
            except POISON as exc:  # undecodable, not a request, or malformed (e.g. input_json not JSON)
                await dead.apoison(record_of(event), exc)
                continue
            await app.producer.send_and_wait(replies_topic, request.envelope["correlation_id"].encode(),
                                             codec.encode(reply.name, reply.to_record()), partition=None,
                                             timestamp=None, headers=[("type", reply.name.encode())])

    return app
