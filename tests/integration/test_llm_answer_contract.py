"""The router holds every plan answer to its contract (real Redis, local servers speaking the OpenAI
protocol): a rejected answer goes back to the model with the errors' paths, at most twice; then the next
provider; a rejected answer is never cached, and one found in a cache is evicted. Outages are retryable,
rejections are not; each provider gets at most its own number of calls at once, and its own token cap."""
from __future__ import annotations

import asyncio
import json

import pytest

from services.llm_router.app import failed
from services.llm_router.cache import SemanticCache, exact_key
from services.llm_router.contract import MAX_REPAIRS, rejected_fields
from services.llm_router.providers import AllProvidersFailedError
from services.core.messages import Message, new_envelope
from tests.integration.test_llm_router import (  # noqa: F401  (fixtures)
    SPEC,
    anyio_backend,
    embedder,
    make_router,
    prefix,
    redis,
    req,
)
from tests.integration.test_llm_router import openai_cfg as _openai_cfg
from tests.support.fake_llm import FakeLlmServer, hang, ok, server_error

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
VALID = {"outcome": "plan", "spec": SPEC}
# Valid JSON that fails PipelineSpec: a sum without a column, and a cron while the trigger says manual.
INVALID = {"outcome": "plan", "spec": {**SPEC, "schedule": {"cron": "0 2 * * *"}, "trigger": {"kind": "manual"},
                                       "aggregate": {"period": "day", "time_column": "created_at",
                                                     "measures": [{"fn": "sum", "alias": "total"}]}}}


def openai_cfg(name, srv, **kw):
    # A generous deadline: these tests are about answers, not about a loaded machine's latency.
    return _openai_cfg(name, srv, **{"timeout_s": 30.0, **kw})


@pytest.fixture
def servers():
    with FakeLlmServer(default=ok(VALID)) as primary, FakeLlmServer(default=ok(VALID)) as fallback:
        yield primary, fallback


async def test_a_rejected_answer_goes_back_to_the_model_with_every_error_path(redis, prefix, servers):
    primary, _ = servers
    primary.script(ok(INVALID), ok(VALID))
    router = make_router(redis, prefix, [openai_cfg("primary", primary)])
    result = await router.complete(req())
    await router.aclose()
    assert result.provider == "primary" and result.output["spec"]["source"]["table"] == "shop.orders"
    repair = primary.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": json.dumps(INVALID)}
    assert "spec.aggregate.measures[0]: sum needs a column" in repair[-1]["content"]
    assert [(r.outcome, r.error_kind) for r in router.records] == [("error", "AnswerRejectedError"), ("ok", None)]


async def test_a_question_instead_of_a_repair_is_not_accepted(redis, prefix, servers):
    primary, fallback = servers
    question = {"outcome": "clarify", "question": "What is the column that sum needs?", "missing": ["column"]}
    primary.script(ok(INVALID), ok(question), ok(question))
    router = make_router(redis, prefix, [openai_cfg("primary", primary), openai_cfg("fallback", fallback)])
    result = await router.complete(req())
    await router.aclose()
    assert (result.provider, result.output["outcome"], primary.calls) == ("fallback", "plan", 3)
    # The request is complete, so the question is refused twice over: not a fix, and not an answer to it.
    assert "a clarify is not a fix" in primary.requests[2].body["messages"][-1]["content"]


async def test_after_two_repair_rounds_the_next_provider_answers_and_is_cached(redis, prefix, servers):
    primary, fallback = servers
    primary.default = ok(INVALID)
    router = make_router(redis, prefix, [openai_cfg("primary", primary), openai_cfg("fallback", fallback)])
    result = await router.complete(req())
    assert (result.provider, result.fallbacks, primary.calls) == ("fallback", ["primary"], 1 + MAX_REPAIRS)
    assert (await router.breaker.state("primary")) == "closed"  # a bad answer is not an outage
    again = await router.complete(req(correlation_id="again"))
    await router.aclose()
    assert again.cache == "exact" and again.output == result.output and fallback.calls == 1


async def test_when_every_answer_is_rejected_the_failure_names_the_fields(redis, prefix, servers):
    primary, fallback = servers
    primary.default = fallback.default = ok(INVALID)
    router = make_router(redis, prefix, [openai_cfg("primary", primary), openai_cfg("fallback", fallback)])
    request = req()
    with pytest.raises(AllProvidersFailedError) as info:
        await router.complete(request)
    assert info.value.rejected and not info.value.retryable
    assert await router.exact.get(exact_key(request, router.route_key(request))) is None  # never cached
    await router.aclose()
    reply = failed(_task_message(), info.value)
    assert reply.payload["error_code"] == "answer_rejected" and not reply.payload["retryable"]
    assert rejected_fields(reply.payload["message"]) == ["spec.aggregate.measures[0]"]


async def test_a_rejected_answer_in_the_exact_cache_is_evicted_not_served(redis, prefix, servers):
    primary, _ = servers
    router = make_router(redis, prefix, [openai_cfg("primary", primary)])
    request = req()
    key = exact_key(request, router.route_key(request))
    await router.exact.put(key, {"output": INVALID, "text": json.dumps(INVALID), "provider": "primary",
                                 "model": "gpt-4o-mini", "tokens_in": 1, "tokens_out": 1})
    result = await router.complete(request)
    assert result.cache == "miss" and primary.calls == 1 and result.output["spec"] == {
        **SPEC, "source": {**SPEC["source"]}, "target": {**SPEC["target"]}}
    assert (await router.exact.get(key))["output"] == result.output
    await router.aclose()


async def test_a_rejected_answer_in_the_semantic_cache_is_evicted(redis, prefix, servers, embedder):
    primary, _ = servers
    semantic = SemanticCache(embedder=embedder, collection=f"c{prefix.replace(':', '_')}")
    router = make_router(redis, prefix, [openai_cfg("primary", primary)], semantic_cache=semantic)
    stale = req()
    vector = await semantic.embed(stale)
    await semantic.store(stale, router.route_key(stale), vector, {
        "output": INVALID, "text": "", "provider": "primary", "model": "m", "tokens_in": 1, "tokens_out": 1})
    assert (await semantic.lookup(stale, router.route_key(stale), vector)) is not None
    result = await router.complete(req())  # same wording, new correlation: a semantic hit on the stale answer
    client = await semantic._get_client()
    points, _ = await client.scroll(semantic.collection, limit=100, with_payload=True)
    await router.aclose()
    assert result.cache == "miss" and primary.calls == 1
    assert [json.loads(p.payload["answer"])["output"] for p in points] == [result.output]


async def test_an_outage_is_retryable_and_not_a_rejection(redis, prefix, servers):
    primary, _ = servers
    primary.default = server_error(503)
    router = make_router(redis, prefix, [openai_cfg("primary", primary)], max_attempts=2)
    with pytest.raises(AllProvidersFailedError) as info:
        await router.complete(req())
    await router.aclose()
    assert info.value.retryable and not info.value.rejected
    reply = failed(_task_message(), info.value)
    assert reply.payload["error_code"] == "providers_unavailable" and reply.payload["retryable"]


async def test_a_timed_out_provider_is_not_asked_again_the_next_one_answers(redis, prefix, servers):
    primary, fallback = servers
    primary.default = hang(10)
    router = make_router(redis, prefix, [openai_cfg("primary", primary, timeout_s=0.3),
                                         openai_cfg("fallback", fallback)])
    result = await router.complete(req())
    await router.aclose()
    assert result.provider == "fallback"
    assert [(r.provider, r.error_kind) for r in router.records] == [("primary", "ProviderTimeoutError"),
                                                                    ("fallback", None)]


@pytest.mark.parametrize("limit", [1, 3])
async def test_each_provider_gets_at_most_its_own_number_of_calls_at_once(redis, prefix, servers, limit):
    primary, _ = servers
    primary.default = ok(VALID, seconds=0.3)
    router = make_router(redis, prefix, [openai_cfg("primary", primary, max_concurrency=limit)])
    await asyncio.gather(*(router.complete(req(f"request {i}")) for i in range(4)))
    await router.aclose()
    assert primary.calls == 4 and 1 <= primary.max_in_flight <= limit
    if limit == 1:
        assert primary.max_in_flight == 1


async def test_max_tokens_is_capped_per_task_and_provider(redis, prefix, servers):
    primary, fallback = servers
    router = make_router(redis, prefix, [openai_cfg("primary", primary),
                                         openai_cfg("fallback", fallback, max_tokens={"plan": 300})])
    await router.complete(req("a", max_tokens=2048))
    await router.complete(req("b", max_tokens=2048, preferred_provider="fallback"))
    await router.aclose()
    assert primary.requests[0].body["max_tokens"] == 700 and fallback.requests[0].body["max_tokens"] == 300


async def test_a_provider_limited_to_some_tasks_is_not_a_candidate_for_others(redis, prefix, servers):
    primary, fallback = servers
    router = make_router(redis, prefix, [openai_cfg("primary", primary, tasks=frozenset({"plan"})),
                                         openai_cfg("fallback", fallback)])
    assert [c.name for c in await router.candidates(req(task="sql"))] == ["fallback"]
    assert [c.name for c in await router.candidates(req())] == ["primary", "fallback"]
    await router.aclose()


def _task_message() -> Message:
    name = "aietl.llm.v1.CompleteLlmTask"
    env = new_envelope(name, tenant_id="tenant-a", pipeline_id="p1", correlation_id="c1", causation_id="x",
                       actor="agent:planner")
    return Message(name, env, {"task": "plan", "requester": "planner", "context_json": "{}"})
