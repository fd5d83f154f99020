"""The LLM router against real Redis (settings.redis_url) and local fake OpenAI/Anthropic servers.

Each test uses its own Redis key prefix (deleted afterwards), so tests never see each other's breakers,
budgets, caches or stats. Sleeping is injected: retries are instant, and the waits are asserted exactly.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from email.utils import formatdate

import pytest
import redis.asyncio as aioredis

from services.core.settings import load_settings
from services.llm_router.breaker import BreakerSettings
from services.llm_router.budget import BudgetPolicy, TenantLimits
from services.llm_router.cache import SemanticCache
from tests.support.fake_llm import (
    FakeLlmServer,
    error,
    non_json_content,
    ok,
    rate_limited,
    server_error,
)
from services.llm_router.providers import (
    AllProvidersFailedError,
    BudgetExceededError,
    LlmRequest,
    ProviderUnavailableError,
)
from services.llm_router.router import ProviderConfig, Router, RouterSettings, provider_configs_from_json

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

P01 = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders every day at 2 AM"
# A plan answer the router's contract accepts (the router reviews every plan answer before using it).
# P01's plan: a reviewed answer must state what the request states (services/llm_router/crosscheck.py).
SPEC = {"source": {"kind": "postgres", "table": "shop.orders"}, "target": {"kind": "clickhouse", "table": "analytics.orders"},
        "schedule": {"cron": "0 2 * * *"}, "trigger": {"kind": "cron"}}
P01_VARIANT = "  load ORDERS from the postgresql table shop.orders   into the clickhouse table ANALYTICS.ORDERS every day at 2 am "


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis():
    url = load_settings().redis_url
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.fail(f"Redis is not reachable at {url} (settings.redis_url; set AIETL_REDIS_URL, e.g. "
                    f"redis://127.0.0.1:6390/0): {type(exc).__name__}: {exc}", pytrace=False)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis):
    value = f"test:llm-router:{uuid.uuid4().hex[:10]}:"
    yield value
    keys = [k async for k in redis.scan_iter(match=value + "*", count=500)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def servers():
    """Two fake LLM servers: ``primary`` and ``fallback``."""
    plan = ok({"outcome": "plan", "spec": SPEC})
    with FakeLlmServer(default=plan) as primary, FakeLlmServer(default=plan) as fallback:
        yield primary, fallback


@pytest.fixture(scope="module")
def embedder():
    from services.core.embeddings import MiniLMEmbedder

    return MiniLMEmbedder()


class FakeSleep:
    """Records the waits the router asks for instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def openai_cfg(name: str, srv: FakeLlmServer, **kw) -> ProviderConfig:
    defaults = dict(model="gpt-4o-mini", api_key=f"sk-{name}", strengths=frozenset({"plan", "sql"}),
                    cost_in_per_1k=0.001, cost_out_per_1k=0.002, timeout_s=2.0)
    return ProviderConfig(name=name, kind="openai", base_url=srv.openai_base_url, **{**defaults, **kw})


def anthropic_cfg(name: str, srv: FakeLlmServer, **kw) -> ProviderConfig:
    defaults = dict(model="claude-3-5-haiku-latest", api_key=f"sk-{name}", strengths=frozenset({"plan"}),
                    timeout_s=2.0)
    return ProviderConfig(name=name, kind="anthropic", base_url=srv.anthropic_base_url, **{**defaults, **kw})


def builtin_cfg() -> ProviderConfig:
    return ProviderConfig(name="builtin", kind="builtin", strengths=frozenset({"plan", "sql", "reflect"}))


def make_router(redis, prefix: str, providers: list[ProviderConfig], *, max_attempts: int = 3,
                failures: int = 5, cooldown: float = 30.0, limits: TenantLimits | None = None, **kw) -> Router:
    settings = RouterSettings(key_prefix=prefix, max_attempts=max_attempts,
                              breaker=BreakerSettings(failure_threshold=failures, cooldown_s=cooldown))
    kw.setdefault("sleep", FakeSleep())
    return Router(providers, redis, kw.pop("semantic_cache", None), settings,
                  BudgetPolicy(default=limits or TenantLimits()), **kw)


def req(text: str = P01, **kw) -> LlmRequest:
    base = dict(task="plan", tenant_id="tenant-a", prompt_version="plan.v1", complexity="medium",
                messages=[{"role": "system", "content": "Plan the pipeline. Answer in JSON."},
                          {"role": "user", "content": text}],
                input={"text": text}, correlation_id=uuid.uuid4().hex)
    base.update(kw)
    return LlmRequest(**base)


# --------------------------------------------------------------------------------- fallback and retries


async def test_fallback_when_the_primary_keeps_failing(redis, prefix, servers) -> None:
    primary, fallback = servers
    primary.default = server_error(503)
    fallback.script(ok({"outcome": "plan", "spec": SPEC, "from": "anthropic"}, tokens_in=50, tokens_out=10))
    sleep = FakeSleep()
    router = make_router(redis, prefix, [openai_cfg("primary", primary), anthropic_cfg("fallback", fallback)],
                         max_attempts=2, sleep=sleep)
    try:
        result = await router.complete(req())
    finally:
        await router.aclose()

    assert result.provider == "fallback" and result.fallbacks == ["primary"]
    assert result.output == {"outcome": "plan", "spec": SPEC, "from": "anthropic"}
    assert (primary.calls, fallback.calls, result.attempts) == (2, 1, 3)
    assert len(sleep.waits) == 1 and 0.25 <= sleep.waits[0] <= 0.5  # jittered backoff, base 0.5 s
    assert fallback.requests[0].path == "/v1/messages"
    assert [(r.provider, r.outcome, r.error_kind) for r in router.records] == [
        ("primary", "error", "ProviderUnavailableError"), ("primary", "error", "ProviderUnavailableError"),
        ("fallback", "ok", None)]


async def test_non_retryable_error_falls_back_without_retrying(redis, prefix, servers) -> None:
    primary, fallback = servers
    primary.script(error(400, "bad request"))
    sleep = FakeSleep()
    router = make_router(redis, prefix, [openai_cfg("primary", primary), openai_cfg("fallback", fallback)],
                         sleep=sleep)
    result = await router.complete(req())
    await router.aclose()
    assert (result.provider, primary.calls, sleep.waits) == ("fallback", 1, [])


async def test_malformed_answer_is_retried_once_then_falls_back(redis, prefix, servers) -> None:
    primary, fallback = servers
    primary.default = non_json_content()
    router = make_router(redis, prefix, [openai_cfg("primary", primary), openai_cfg("fallback", fallback)],
                         max_attempts=5)
    result = await router.complete(req())
    await router.aclose()
    assert (result.provider, primary.calls, fallback.calls) == ("fallback", 2, 1)


async def test_retry_after_is_honoured(redis, prefix, servers) -> None:
    primary, _ = servers
    primary.script(rate_limited("7"), ok({"outcome": "plan", "spec": SPEC}))
    sleep = FakeSleep()
    router = make_router(redis, prefix, [openai_cfg("primary", primary)], sleep=sleep)
    result = await router.complete(req())
    await router.aclose()
    assert sleep.waits == [7.0]
    assert (result.provider, result.attempts, primary.calls) == ("primary", 2, 2)


async def test_retry_after_as_http_date_is_honoured(redis, prefix, servers) -> None:
    primary, _ = servers
    primary.script(rate_limited(formatdate(time.time() + 6, usegmt=True)), ok({"outcome": "plan", "spec": SPEC}))
    sleep = FakeSleep()
    router = make_router(redis, prefix, [openai_cfg("primary", primary)], sleep=sleep)
    await router.complete(req())
    await router.aclose()
    assert len(sleep.waits) == 1 and 4.0 <= sleep.waits[0] <= 6.0  # whole-second date, measured on receipt


async def test_retry_after_beyond_the_cap_falls_back_instead_of_waiting(redis, prefix, servers) -> None:
    primary, fallback = servers
    primary.script(rate_limited("3600"))
    sleep = FakeSleep()
    router = make_router(redis, prefix, [openai_cfg("primary", primary), openai_cfg("fallback", fallback)],
                         sleep=sleep)
    result = await router.complete(req())
    await router.aclose()
    assert (result.provider, primary.calls, sleep.waits) == ("fallback", 1, [])


async def test_all_providers_failed_lists_each_last_error(redis, prefix, servers) -> None:
    primary, fallback = servers
    primary.default = server_error(502)
    fallback.default = error(401, "Incorrect API key provided")
    router = make_router(redis, prefix, [openai_cfg("primary", primary), openai_cfg("fallback", fallback)],
                         max_attempts=2)
    with pytest.raises(AllProvidersFailedError) as info:
        await router.complete(req())
    await router.aclose()
    assert set(info.value.errors) == {"primary", "fallback"}
    assert "primary: ProviderUnavailableError: HTTP 502" in str(info.value)
    assert "fallback: ProviderRequestError: HTTP 401 from fallback: Incorrect API key" in str(info.value)


# ------------------------------------------------------------------------------------- circuit breaker


async def test_breaker_opens_is_shared_and_recovers_after_cooldown(redis, prefix, servers) -> None:
    primary, fallback = servers
    primary.default = server_error(500)
    clock = FakeClock()
    # The fallback is not strong at planning, so the primary stays first in the chain even while open.
    providers = [openai_cfg("primary", primary), openai_cfg("fallback", fallback, strengths=frozenset())]
    a = make_router(redis, prefix, providers, max_attempts=1, failures=2, cooldown=30, clock=clock)
    b = make_router(redis, prefix, providers, max_attempts=1, failures=2, cooldown=30, clock=clock)
    try:
        for i in range(2):  # two consecutive failures open the breaker
            assert (await a.complete(req(f"{P01} #{i}"))).provider == "fallback"
        assert primary.calls == 2
        assert await a.breaker.state("primary") == "open"
        assert await b.breaker.state("primary") == "open"  # same Redis, same state

        # Router B does not even try the primary while it is open.
        result = await b.complete(req(f"{P01} #b"))
        assert (result.provider, result.fallbacks, primary.calls) == ("fallback", ["primary"], 2)

        # After the cool-down one trial call is let through; its success closes the breaker for everyone.
        clock.now += 31
        assert await b.breaker.state("primary") == "half_open"
        primary.default = ok({"outcome": "plan", "spec": SPEC})
        result = await b.complete(req(f"{P01} #trial"))
        assert (result.provider, result.fallbacks, primary.calls) == ("primary", [], 3)
        assert await a.breaker.state("primary") == "closed"
        assert (await a.complete(req(f"{P01} #after"))).provider == "primary"
    finally:
        await a.aclose()
        await b.aclose()


async def test_failed_half_open_trial_reopens_the_breaker(redis, prefix, servers) -> None:
    primary, fallback = servers
    primary.default = server_error(503)
    clock = FakeClock()
    router = make_router(redis, prefix, [openai_cfg("primary", primary),
                                         openai_cfg("fallback", fallback, cost_in_per_1k=0.01)],
                         max_attempts=3, failures=1, cooldown=10, clock=clock)
    await router.complete(req("one"))
    assert (primary.calls, await router.breaker.state("primary")) == (1, "open")  # no retry once open
    clock.now += 11
    await router.complete(req("two"))  # the trial fails: open again, no further retries
    assert (primary.calls, await router.breaker.state("primary")) == (2, "open")
    await router.complete(req("three"))
    assert primary.calls == 2
    await router.aclose()


async def test_half_open_admits_a_single_trial(redis, prefix) -> None:
    clock = FakeClock()
    router = make_router(redis, prefix, [builtin_cfg()], failures=1, cooldown=5, clock=clock)
    await router.breaker.record_failure("p")
    assert await router.breaker.allow("p") == (False, "open")
    clock.now += 6
    first, second = await asyncio.gather(router.breaker.allow("p"), router.breaker.allow("p"))
    assert sorted([first, second]) == [(False, "half_open"), (True, "half_open")]
    assert await router.breaker.record_success("p") == "half_open"
    assert await router.breaker.allow("p") == (True, "closed")


# ------------------------------------------------------------------------------------ budget and limits


async def test_daily_budget_exceeded_refuses_before_any_provider_call(redis, prefix, servers) -> None:
    primary, _ = servers
    primary.default = ok({"outcome": "plan", "spec": SPEC}, tokens_in=1000, tokens_out=500)
    router = make_router(redis, prefix, [openai_cfg("primary", primary, cost_in_per_1k=0.01, cost_out_per_1k=0.02)],
                         limits=TenantLimits(daily_usd=0.015))
    first = await router.complete(req("first"))
    assert first.cost_usd == pytest.approx(0.02)  # 1000 * 0.01/1k + 500 * 0.02/1k

    with pytest.raises(BudgetExceededError) as info:
        await router.complete(req("second"))
    err = info.value
    assert (err.budget, err.limit, err.current, err.tenant_id) == ("daily_usd", 0.015, pytest.approx(0.02), "tenant-a")
    assert str(err).startswith("tenant 'tenant-a' exceeded its daily_usd budget (daily spend (USD)): "
                               "limit 0.015, current 0.02")
    assert primary.calls == 1  # refused before calling the provider

    # Another tenant has its own budget; a cached answer stays free even over budget.
    assert (await router.complete(req("second", tenant_id="tenant-b"))).cache == "miss"
    assert (await router.complete(req("first"))).cache == "exact"
    stats = await router.stats("tenant-a")
    assert stats["budget_rejections"] == {"daily_usd": 1}
    assert stats["budget"]["daily_usd"] == pytest.approx(0.02)
    await router.aclose()


async def test_rpm_limit(redis, prefix, servers) -> None:
    primary, _ = servers
    router = make_router(redis, prefix, [openai_cfg("primary", primary)], limits=TenantLimits(rpm=2))
    await router.complete(req("one"))
    await router.complete(req("two"))
    with pytest.raises(BudgetExceededError) as info:
        await router.complete(req("three"))
    assert info.value.budget == "rpm" and info.value.limit == 2 and info.value.current == 2
    assert "requests per minute" in str(info.value) and 0 < info.value.retry_after <= 60
    assert primary.calls == 2
    await router.complete(req("three", tenant_id="tenant-b"))  # limits are per tenant
    await router.aclose()


async def test_tpm_limit_and_per_tenant_override(redis, prefix, servers) -> None:
    primary, _ = servers
    primary.default = ok({"outcome": "plan", "spec": SPEC}, tokens_in=40, tokens_out=40)
    policy = BudgetPolicy(default=TenantLimits(tpm=100), per_tenant={"big": TenantLimits(tpm=10_000)})
    router = Router([openai_cfg("primary", primary)], redis, None, RouterSettings(key_prefix=prefix), policy,
                    sleep=FakeSleep())
    await router.complete(req("one"))  # 80 tokens used this minute
    with pytest.raises(BudgetExceededError, match="tpm budget") as info:
        await router.complete(req("two"))
    assert info.value.current == 80
    await router.complete(req("two", tenant_id="big"))
    assert primary.calls == 2
    await router.aclose()


# ------------------------------------------------------------------------------------------ caching


async def test_exact_cache_hit_on_redelivery_calls_no_provider(redis, prefix, servers) -> None:
    primary, _ = servers
    primary.script(ok({"outcome": "plan", "spec": SPEC, "n": 1}, tokens_in=30, tokens_out=20))
    records: list = []
    router = make_router(redis, prefix, [openai_cfg("primary", primary)], on_call=records.append)
    other_instance = make_router(redis, prefix, [openai_cfg("primary", primary)])
    request = req()

    first = await router.complete(request)
    again = await router.complete(request)
    redelivered = await other_instance.complete(LlmRequest.from_dict(request.to_dict()))

    assert first.cache == "miss" and again.cache == "exact" and redelivered.cache == "exact"
    assert primary.calls == 1
    assert again.output == first.output == {"outcome": "plan", "spec": SPEC, "n": 1}
    assert (again.provider, again.tokens_in, again.tokens_out, again.cost_usd, again.attempts) == (
        "primary", 30, 20, 0.0, 0)
    assert [(r.cache, r.outcome) for r in records] == [("miss", "ok"), ("exact", "ok")]
    # A different tenant or prompt version is a different key.
    await router.complete(req(tenant_id="tenant-b"))
    await router.complete(req(prompt_version="plan.v2"))
    assert primary.calls == 3
    await router.aclose()
    await other_instance.aclose()


async def test_semantic_cache_scope(redis, prefix, servers, embedder) -> None:
    primary, _ = servers

    async def ask(request):  # the model answers each text right: a reviewed answer must match its request
        from services.understanding import compile_request

        reading = compile_request(request.input["text"])
        primary.default = ok({"outcome": "plan", "spec": reading["spec"] if reading["outcome"] == "plan" else SPEC})
        return await router.complete(request)

    semantic = SemanticCache(embedder=embedder, collection=f"c_{uuid.uuid4().hex[:8]}")
    router = make_router(redis, prefix, [openai_cfg("primary", primary)], semantic_cache=semantic)
    try:
        assert (await ask(req(P01))).cache == "miss"
        hit = await ask(req(P01_VARIANT))  # same meaning, case/whitespace differ: exact key differs
        assert (hit.cache, hit.provider, primary.calls) == ("semantic", "primary", 1)

        # Same words, other scope: never served across tenants, tasks or prompt versions.
        assert (await ask(req(P01_VARIANT, tenant_id="tenant-b"))).cache == "miss"
        assert (await ask(req(P01_VARIANT, task="qa"))).cache == "miss"
        assert (await ask(req(P01_VARIANT, prompt_version="plan.v2"))).cache == "miss"
        assert primary.calls == 4
        # A near-miss in meaning ("15" vs "5" minutes) is not a hit either.
        assert (await ask(req("Every 15 minutes load shop.orders from PostgreSQL into ClickHouse")))\
            .cache == "miss"
        assert (await ask(req("Every 5 minutes load shop.orders from PostgreSQL into ClickHouse")))\
            .cache == "miss"
        assert primary.calls == 6
        # Nor is one that names another table: the embeddings are 0.999+ alike, the answers must differ.
        base = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.copy_"
        assert (await ask(req(base + "0_a1b2"))).cache == "miss"
        assert (await ask(req(base + "1_a1b2"))).cache == "miss"
        assert (await ask(req((base + "1_a1b2").upper()))).cache == "semantic"
        assert primary.calls == 8  # the two table variants; the upper-case one came from the cache

        # Repair rounds neither read the semantic cache...
        repair = await ask(req(P01_VARIANT, repair_round=1, input={"text": P01_VARIANT,
                                                                               "failures": ["bad cron"]}))
        assert repair.cache == "miss" and primary.calls == 9
        # ...nor write it: a round-0 variant of a repair-only text finds nothing.
        text = "Copy customers.csv into the PostgreSQL table public.customers"
        await ask(req(text, repair_round=2))
        assert (await ask(req(text.upper()))).cache == "miss"
        assert primary.calls == 11
    finally:
        await router.aclose()


# ------------------------------------------------------------------------------------ routing, builtin


async def test_builtin_answers_a_public_case_offline(redis, prefix) -> None:
    router = Router(provider_configs_from_json(None), redis, None, RouterSettings(key_prefix=prefix))
    result = await router.complete(req(P01, messages=[]))
    assert (result.provider, result.model, result.cost_usd, result.cache) == ("builtin", "builtin-v1", 0.0, "miss")
    assert result.output["outcome"] == "plan"
    assert result.output["spec"]["schedule"]["cron"] == "0 2 * * *"
    assert result.output["spec"]["target"]["table"] == "analytics.orders"
    assert result.tokens_out == len(result.text) // 4 > 0
    ru = await router.complete(req("Загружать заказы из PostgreSQL (shop.orders) в ClickHouse analytics.orders_ru "
                                   "ежедневно в 2 часа ночи", messages=[]))
    assert ru.output["outcome"] == "plan" and ru.output["spec"]["schedule"]["cron"] == "0 2 * * *"
    await router.aclose()


async def test_builtin_is_the_last_resort_fallback(redis, prefix, servers) -> None:
    primary, _ = servers
    primary.default = server_error(503)
    router = make_router(redis, prefix, [builtin_cfg(), openai_cfg("primary", primary)], max_attempts=1)
    result = await router.complete(req(P01))
    assert (result.provider, result.fallbacks, primary.calls) == ("builtin", ["primary"], 1)
    assert result.output["outcome"] == "plan"
    await router.aclose()


async def test_candidate_order(redis, prefix, servers) -> None:
    srv, _ = servers
    cheap_sql = openai_cfg("cheap-sql", srv, strengths={"sql"}, cost_in_per_1k=0.0001, cost_out_per_1k=0.0001)
    small = openai_cfg("small", srv, strengths={"plan"}, max_complexity="low", cost_in_per_1k=0.0001,
                       cost_out_per_1k=0.0001)
    big = openai_cfg("big", srv, strengths={"plan"}, cost_in_per_1k=0.01, cost_out_per_1k=0.03)
    mid = anthropic_cfg("mid", srv, strengths={"plan"}, cost_in_per_1k=0.003, cost_out_per_1k=0.015)
    router = make_router(redis, prefix, [builtin_cfg(), cheap_sql, small, big, mid], failures=1)
    names = lambda cs: [c.name for c in cs]  # noqa: E731

    # Strength first, then complexity fit, then cost; the builtin last.
    assert names(await router.candidates(req(complexity="high"))) == ["mid", "big", "small", "cheap-sql", "builtin"]
    assert names(await router.candidates(req(complexity="low"))) == ["small", "mid", "big", "cheap-sql", "builtin"]
    assert names(await router.candidates(req(task="sql")))[:1] == ["cheap-sql"]
    # A preferred provider goes first while healthy...
    assert names(await router.candidates(req(preferred_provider="builtin")))[0] == "builtin"
    assert names(await router.candidates(req(complexity="high", preferred_provider="big")))[:2] == ["big", "mid"]
    # ...and an open breaker sends a provider behind its healthy peers.
    await router.breaker.record_failure("mid")
    assert names(await router.candidates(req(complexity="high", preferred_provider="mid"))) == [
        "big", "mid", "small", "cheap-sql", "builtin"]
    await router.aclose()


async def test_stats_and_call_records(redis, prefix, servers) -> None:
    primary, fallback = servers
    primary.script(server_error(500), ok({"outcome": "plan", "spec": SPEC, "a": 1}, tokens_in=100, tokens_out=50))
    fallback.default = ok({"outcome": "plan", "spec": SPEC, "b": 1}, tokens_in=10, tokens_out=5)
    published: list = []

    async def on_call(record) -> None:  # the glue publishes asynchronously
        published.append(record.to_dict())

    router = make_router(redis, prefix, [openai_cfg("primary", primary, cost_in_per_1k=0.01, cost_out_per_1k=0.02),
                                         openai_cfg("fallback", fallback, strengths=frozenset())], on_call=on_call)
    await router.complete(req("x"))  # primary: one error, then ok
    await router.complete(req("x"))  # exact hit
    await router.complete(req("y", preferred_provider="fallback", tenant_id="tenant-b"))

    stats = await router.stats()
    p, f = stats["providers"]["primary"], stats["providers"]["fallback"]
    assert (p["calls"], p["errors"], p["successes"], p["tokens_in"], p["tokens_out"], p["cache_exact"]) == (
        2, 1, 1, 100, 50, 1)
    assert p["cost_usd"] == pytest.approx(0.002) and p["breaker"] == "closed" and p["avg_latency_ms"] > 0
    assert (f["calls"], f["tokens_in"], f["model"]) == (1, 10, "gpt-4o-mini")
    assert stats["totals"]["calls"] == 3
    tenant_b = await router.stats("tenant-b")
    assert tenant_b["providers"]["primary"]["calls"] == 0 and tenant_b["providers"]["fallback"]["calls"] == 1
    assert tenant_b["budget"]["rpm"] == 1
    assert [(r["provider"], r["outcome"], r["cache"]) for r in published] == [
        ("primary", "error", "miss"), ("primary", "ok", "miss"), ("primary", "ok", "exact"),
        ("fallback", "ok", "miss")]
    assert published[1]["tokens_in"] == 100 and published[1]["cost_usd"] == pytest.approx(0.002)
    assert published[0]["correlation_id"] == published[1]["correlation_id"]
    await router.aclose()


async def test_breaker_skip_keeps_the_real_error(redis, prefix, servers) -> None:
    primary, _ = servers
    primary.default = server_error(503)
    router = make_router(redis, prefix, [openai_cfg("primary", primary)], failures=1)
    with pytest.raises(AllProvidersFailedError) as info:
        await router.complete(req())
    assert isinstance(info.value.errors["primary"], ProviderUnavailableError)
    assert "HTTP 503" in str(info.value)
    with pytest.raises(AllProvidersFailedError, match="circuit breaker open for primary"):
        await router.complete(req("next"))
    assert primary.calls == 1
    await router.aclose()


async def test_router_from_settings(redis, prefix, monkeypatch) -> None:
    with FakeLlmServer(api_key="sk-from-env", default=ok({"outcome": "plan", "spec": SPEC})) as srv:
        monkeypatch.setenv("TEST_LLM_KEY", "sk-from-env")
        providers = [{"name": "local-vllm", "kind": "vllm", "model": "qwen2.5-coder", "base_url": srv.openai_base_url,
                      "api_key_env": "TEST_LLM_KEY", "strengths": ["plan"], "timeout_s": 2},
                     {"name": "builtin", "kind": "builtin"}]
        settings = load_settings(llm_providers_json=json.dumps(providers), llm_key_prefix=prefix,
                                 llm_semantic_cache=False, llm_tenant_rpm=5, llm_breaker_failures=2)
        router = Router.from_settings(settings, redis, sleep=FakeSleep())
        assert [c.name for c in router.configs] == ["local-vllm", "builtin"]
        assert router.semantic is None and router.settings.breaker.failure_threshold == 2
        assert router.budget.policy.limits_for("anyone").rpm == 5
        result = await router.complete(req())
        await router.aclose()
    assert (result.provider, result.model, result.cost_usd) == ("local-vllm", "qwen2.5-coder", 0.0)  # unknown = free
    assert srv.requests[0].headers["authorization"] == "Bearer sk-from-env"
