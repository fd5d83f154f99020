"""The LLM router: one :meth:`Router.complete` call = caches, budget, routing, retries, fallback, breaker.

Order of work for a request:

1. exact cache (Redis) → on a hit no provider is called (a redelivered Kafka message costs nothing);
2. semantic cache (Qdrant, repair round 0 only);
3. tenant limits (rpm, tpm, daily spend) → :class:`BudgetExceededError` before any provider call;
   cache hits are served even over budget because they cost nothing;
4. candidates: ``preferred_provider`` first when its breaker is not open, then by task strength, complexity
   fit, breaker health and estimated cost; the builtin provider last, as the offline last resort;
5. per candidate: retries on retryable errors with jittered exponential backoff, or exactly Retry-After
   when the server sent one (a Retry-After above the cap means "fall back now" rather than a long wait);
   a malformed answer is retried once; each failure feeds that provider's shared circuit breaker;
6. the answer is cached, usage is settled against the budget, and every attempt becomes a
   :class:`CallRecord` (kept in ``router.records``, handed to ``on_call``, aggregated in Redis for
   :meth:`Router.stats`).
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import os
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Awaitable, Callable, Optional

from .breaker import HALF_OPEN, OPEN, BreakerSettings, CircuitBreaker
from .budget import BudgetGuard, BudgetPolicy
from .cache import CACHED_FIELDS, ExactCache, SemanticCache, exact_key
from .contract import MAX_REPAIRS, repair_abandoned, repair_messages, review
from .pricing import FREE, Price, resolve_price
from .providers import (
    COMPLEXITIES,
    AllProvidersFailedError,
    AnswerRejectedError,
    AnthropicProvider,
    BudgetExceededError,
    BuiltinProvider,
    LlmError,
    LlmRequest,
    LlmResult,
    MalformedResponseError,
    OllamaProvider,
    OpenAICompatibleProvider,
    Provider,
    ProviderReply,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    canonical_json,
    estimate_tokens,
    prompt_messages,
)

log = logging.getLogger(__name__)

# Every OpenAI-compatible server is one kind; the aliases let configs name what they actually run.
OPENAI_KINDS = {"openai", "openai_compatible", "deepseek", "qwen", "vllm", "ollama", "llamacpp", "llama.cpp"}
KINDS = OPENAI_KINDS | {"builtin", "anthropic"}
# Models served on the deployment's own CPUs or GPU: slow cold calls, one generation at a time.
LOCAL_KINDS = {"ollama", "llamacpp", "llama.cpp"}
# Structured output, as each server family spells it (see OpenAICompatibleProvider.response_format).
STRUCTURED = {"openai": "json_schema", "openai_compatible": "json_schema", "vllm": "json_schema",
              "llamacpp": "llamacpp", "llama.cpp": "llamacpp", "deepseek": "json_object", "qwen": "json_object"}
# Output budgets per task: a plan or a SQL answer is a few hundred tokens; a runaway generation on a
# local model costs minutes, so the cap is part of the contract rather than the model's choice.
TASK_MAX_TOKENS = {"plan": 700, "sql": 1500, "python": 1500, "reflect": 600, "schema": 800, "qa": 800}
STAT_FIELDS = ("calls", "errors", "successes", "tokens_in", "tokens_out", "cost_usd", "latency_ms_total",
               "cache_exact", "cache_semantic")


# ---------------------------------------------------------------------------------------- configuration


@dataclass
class ProviderConfig:
    name: str
    kind: str  # builtin | anthropic | openai (or an alias in OPENAI_KINDS)
    model: str = ""
    base_url: Optional[str] = None
    api_key: Optional[str] = None
    api_key_env: Optional[str] = None  # read the key from this variable, so configs hold no secrets
    strengths: frozenset[str] = frozenset()  # tasks this provider is good at
    cost_in_per_1k: Optional[float] = None  # USD; None = list price from services.llm_router.pricing
    cost_out_per_1k: Optional[float] = None
    max_complexity: str = "high"
    timeout_s: Optional[float] = None  # None: 300 s for local kinds (CPU inference), 60 s otherwise
    max_concurrency: Optional[int] = None  # calls in flight; None: 1 for local kinds, 8 otherwise
    max_tokens: dict[str, int] = field(default_factory=dict)  # per task, over TASK_MAX_TOKENS
    tasks: frozenset[str] = frozenset()  # the only tasks it may answer; empty: all
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"provider {self.name!r}: unknown kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.max_complexity not in COMPLEXITIES:
            raise ValueError(f"provider {self.name!r}: max_complexity must be one of {COMPLEXITIES}")
        if self.kind in OPENAI_KINDS and not self.base_url:
            raise ValueError(f"provider {self.name!r}: an OpenAI-compatible provider needs base_url")
        if self.kind != "builtin" and not self.model:
            raise ValueError(f"provider {self.name!r}: model is required")
        self.strengths = frozenset(self.strengths)
        self.tasks = frozenset(self.tasks)
        self.model = self.model or BuiltinProvider.model
        local = self.kind in LOCAL_KINDS
        if self.timeout_s is None:
            self.timeout_s = 300.0 if local else 60.0
        if self.max_concurrency is None:
            self.max_concurrency = 1 if local else 8
        if self.timeout_s <= 0 or self.max_concurrency < 1:
            raise ValueError(f"provider {self.name!r}: timeout_s must be > 0 and max_concurrency >= 1")

    def answers(self, task: str) -> bool:
        return not self.tasks or task in self.tasks

    def token_cap(self, task: str) -> int:
        return int(self.max_tokens.get(task) or TASK_MAX_TOKENS.get(task) or 1024)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProviderConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"provider config {data.get('name')!r}: unknown fields {sorted(unknown)}")
        return cls(**{**data, "tasks": frozenset(data.get("tasks") or ()),
                      "strengths": frozenset(data.get("strengths") or ())})

    @property
    def is_builtin(self) -> bool:
        return self.kind == "builtin"

    def price(self) -> Price:
        return FREE if self.is_builtin else resolve_price(self.model, self.cost_in_per_1k, self.cost_out_per_1k)

    def key(self) -> str | None:
        return self.api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None)


def build_provider(config: ProviderConfig) -> Provider:
    if config.is_builtin:
        return BuiltinProvider(name=config.name)
    if config.kind == "anthropic":
        return AnthropicProvider(config.base_url, config.key(), config.model, name=config.name,
                                 timeout_s=config.timeout_s)
    if config.kind == "ollama":
        return OllamaProvider(config.base_url or "", config.key(), config.model, name=config.name,
                              timeout_s=config.timeout_s)
    # llama.cpp streams so that abandoning a timed-out call stops its generation on the server.
    return OpenAICompatibleProvider(config.base_url or "", config.key(), config.model, name=config.name,
                                    timeout_s=config.timeout_s, structured=STRUCTURED.get(config.kind, "json_object"),
                                    stream=config.kind in ("llamacpp", "llama.cpp"))


def provider_configs_from_json(raw: str | None) -> list[ProviderConfig]:
    """``[{"name": ..., "kind": ..., ...}, ...]``; nothing configured means the builtin provider alone."""
    if not raw:
        return [ProviderConfig(name="builtin", kind="builtin", strengths=frozenset({"plan", "sql", "reflect"}))]
    return [ProviderConfig.from_dict(item) for item in json.loads(raw)]


@dataclass(frozen=True)
class RouterSettings:
    key_prefix: str = "aietl:llm:"
    max_attempts: int = 3  # per provider, for retryable errors
    malformed_attempts: int = 2  # a malformed answer is retried once, then the next provider
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 30.0
    breaker: BreakerSettings = BreakerSettings()
    exact_cache_ttl_s: int = 7 * 86400
    records_kept: int = 1000

    @classmethod
    def from_settings(cls, settings: Any) -> "RouterSettings":
        return cls(key_prefix=settings.llm_key_prefix, max_attempts=settings.llm_max_attempts,
                   backoff_base_s=settings.llm_backoff_base_s, backoff_max_s=settings.llm_backoff_max_s,
                   retry_after_cap_s=settings.llm_retry_after_cap_s,
                   breaker=BreakerSettings(failure_threshold=settings.llm_breaker_failures,
                                           cooldown_s=settings.llm_breaker_cooldown_s),
                   exact_cache_ttl_s=settings.llm_exact_cache_ttl_s)


@dataclass
class CallRecord:
    """One provider attempt or one cache hit: what the glue publishes (ClickHouse ``llm_calls``)."""

    at: float
    correlation_id: str
    tenant_id: str
    task: str
    prompt_version: str
    repair_round: int
    provider: str
    model: str
    attempt: int  # 1-based within this provider; 0 for a cache hit
    cache: str  # miss | exact | semantic
    outcome: str  # ok | error (a rejected answer is an error of kind AnswerRejectedError)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    error_kind: Optional[str] = None
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _ProviderOutcome:
    reply: Optional[ProviderReply] = None
    error: Optional[LlmError] = None
    attempts: int = 0
    latency_ms: float = 0.0
    text: str = ""  # the last rejected answer, quoted back to the model in a repair round


# --------------------------------------------------------------------------------------------- router


class Router:
    def __init__(self, providers: list[ProviderConfig], redis: Any, semantic_cache: SemanticCache | None = None,
                 settings: RouterSettings = RouterSettings(), budget: BudgetPolicy | None = None, *,
                 on_call: Callable[[CallRecord], Any] | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 provider_factory: Callable[[ProviderConfig], Provider] = build_provider) -> None:
        names = [p.name for p in providers]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique: {names}")
        self.configs = [p for p in providers if p.enabled]
        if not self.configs:
            raise ValueError("at least one enabled provider is required")
        self.redis, self.settings, self.semantic = redis, settings, semantic_cache
        self.on_call, self._sleep, self.clock = on_call, sleep, clock
        self._rng = rng or random.Random()
        self._factory = provider_factory
        self._providers: dict[str, Provider] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._inflight: dict[str, tuple[asyncio.Lock, int]] = {}  # exact key -> (lock, requests using it)
        prefix = settings.key_prefix
        self.breaker = CircuitBreaker(redis, prefix, settings.breaker, clock)
        self.budget = BudgetGuard(redis, prefix, budget, clock)
        self.exact = ExactCache(redis, prefix, settings.exact_cache_ttl_s)
        self.records: deque[CallRecord] = deque(maxlen=settings.records_kept)
        # Cache keys include the configured routes: a config change must not serve another model's answers.
        self._route_fp = hashlib.sha256(",".join(sorted(f"{p.name}:{p.kind}:{p.model}" for p in self.configs))
                                        .encode()).hexdigest()[:12]

    @classmethod
    def from_settings(cls, settings: Any, redis: Any, **kw: Any) -> "Router":
        semantic = SemanticCache.from_settings(settings) if getattr(settings, "llm_semantic_cache", True) else None
        return cls(provider_configs_from_json(settings.llm_providers_json), redis, kw.pop("semantic_cache", semantic),
                   RouterSettings.from_settings(settings), BudgetPolicy.from_settings(settings), **kw)

    async def warm_up(self) -> None:
        """Load the semantic cache's embedder and store, and let each provider that can warm itself do so,
        before the first request; a failure only logs (that request pays instead)."""
        if self.semantic is not None:
            try:
                await self.semantic.warm_up()
            except Exception:
                log.warning("semantic cache warm-up failed", exc_info=True)
        for config in self.configs:
            warm = getattr(self._provider(config), "warm_up", None)
            if warm is None:
                continue
            try:
                await asyncio.to_thread(warm)
            except Exception:
                log.warning("provider %s warm-up failed", config.name, exc_info=True)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        if self.semantic is not None:
            await self.semantic.aclose()

    # -- the call

    async def complete(self, request: LlmRequest) -> LlmResult:
        started = time.monotonic()
        route = self.route_key(request)
        key = exact_key(request, route)
        # Single flight per exact key: a redelivered request that arrives while its twin is still being
        # answered waits for it and is then served from the exact cache, never paid twice.
        lock, users = self._inflight.get(key, (asyncio.Lock(), 0))
        self._inflight[key] = (lock, users + 1)
        try:
            async with lock:
                return await self._complete(request, route, key, started)
        finally:
            lock, users = self._inflight[key]
            if users <= 1:
                del self._inflight[key]
            else:
                self._inflight[key] = (lock, users - 1)

    async def _complete(self, request: LlmRequest, route: str, key: str, started: float) -> LlmResult:
        cached = await self.exact.get(key)
        if cached is not None and self._still_acceptable(request, cached):
            return await self._cached_result(request, cached, "exact", started)
        if cached is not None:  # cached before the contract knew better: never serve it again
            await self.exact.delete(key)
        vector = await self._semantic_vector(request)
        hit = await self._semantic_lookup(request, route, vector)
        if hit is not None and self._still_acceptable(request, hit.answer):
            await self.exact.put(key, hit.answer)
            return await self._cached_result(request, hit.answer, "semantic", started)
        if hit is not None:
            await self._semantic_evict(hit.point_id)
        reservation = await self._admit(request)
        try:
            result = await self._call_chain(request, started)
        except BaseException:
            await self.budget.settle(reservation, 0, 0.0)  # nothing was used; release the reserved tokens
            raise
        await self.budget.settle(reservation, result.tokens_in + result.tokens_out, result.cost_usd)
        await self.exact.put(key, result.to_dict())
        await self._semantic_store(request, route, vector, result)
        return result

    def route_key(self, request: LlmRequest) -> str:
        return f"{request.preferred_provider or 'auto'}/{request.complexity}/{self._route_fp}"

    async def candidates(self, request: LlmRequest) -> list[ProviderConfig]:
        """The fallback chain for ``request``, best first (only providers that answer its task)."""
        configs = [c for c in self.configs if c.answers(request.task)]
        states = {c.name: await self.breaker.state(c.name) for c in configs}
        estimate = self._estimate_cost_tokens(request)
        need = COMPLEXITIES.index(request.complexity)
        preferred = request.preferred_provider
        if preferred and preferred not in states:
            log.warning("preferred provider %r is not configured; routing automatically", preferred)

        def rank(indexed: tuple[int, ProviderConfig]) -> tuple:
            i, c = indexed
            return (not (c.name == preferred and states[c.name] != OPEN),
                    c.is_builtin and c.name != preferred,  # the offline last resort
                    request.task not in c.strengths,
                    COMPLEXITIES.index(c.max_complexity) < need,
                    states[c.name] == OPEN,
                    c.price().cost(*estimate),
                    # Half-open only breaks ties: ranking it below every closed peer would starve a
                    # recovered provider of the trial call that closes its breaker.
                    states[c.name] == HALF_OPEN,
                    i)

        return [c for _, c in sorted(enumerate(configs), key=rank)]

    # -- caches and budget

    async def _cached_result(self, request: LlmRequest, answer: dict[str, Any], status: str,
                             started: float) -> LlmResult:
        latency = (time.monotonic() - started) * 1000
        result = LlmResult(**{k: answer[k] for k in CACHED_FIELDS}, cost_usd=0.0, latency_ms=latency,
                           cache=status, attempts=0, fallbacks=[])
        await self._record(self._new_record(request, result.provider, result.model, 0, status, "ok",
                                            tokens_in=result.tokens_in, tokens_out=result.tokens_out,
                                            latency_ms=latency))
        return result

    async def _semantic_vector(self, request: LlmRequest) -> list[float] | None:
        if self.semantic is None or not self.semantic.applies(request):
            return None  # never for repair rounds: the earlier answer is the one that failed QA
        if all(c.is_builtin for c in self.configs if c.answers(request.task)):
            # The offline provider answers in milliseconds, faster than one embedding, and exactly for this
            # text: a similar request's answer would only be a worse one.
            return None
        try:
            return await self.semantic.embed(request)
        except Exception:  # the semantic cache is an optimisation; a broken one must not fail requests
            log.exception("semantic cache: embedding failed; continuing without it")
            return None

    async def _semantic_lookup(self, request: LlmRequest, route: str, vector: list[float] | None):
        if vector is None:
            return None
        try:
            return await self.semantic.lookup(request, route, vector)
        except Exception:
            log.exception("semantic cache: lookup failed; continuing without it")
            return None

    async def _semantic_evict(self, point_id: str) -> None:
        try:
            await self.semantic.evict(point_id)
        except Exception:
            log.exception("semantic cache: evicting a rejected answer failed")

    @staticmethod
    def _still_acceptable(request: LlmRequest, answer: dict[str, Any]) -> bool:
        return review(request.task, answer["output"], request.input).ok

    async def _semantic_store(self, request: LlmRequest, route: str, vector: list[float] | None,
                              result: LlmResult) -> None:
        if vector is None:
            return
        try:
            await self.semantic.store(request, route, vector, result.to_dict())
        except Exception:
            log.exception("semantic cache: store failed")

    async def _admit(self, request: LlmRequest):
        try:
            return await self.budget.admit(request.tenant_id, self._estimate_prompt_tokens(request))
        except BudgetExceededError as err:
            await self._count_rejection(request.tenant_id, err.budget)
            raise

    @staticmethod
    def _estimate_prompt_tokens(request: LlmRequest) -> int:
        return estimate_tokens(canonical_json(request.messages or request.input))

    def _estimate_cost_tokens(self, request: LlmRequest) -> tuple[int, int]:
        return self._estimate_prompt_tokens(request), request.effective_max_tokens

    # -- providers, retries, fallback

    async def _call_chain(self, request: LlmRequest, started: float) -> LlmResult:
        errors: dict[str, LlmError | str] = {}
        passed_over: list[str] = []
        attempts = 0
        for config in await self.candidates(request):
            outcome = await self._try_provider(config, request)
            attempts += outcome.attempts
            if outcome.reply is not None:
                return self._result(config, outcome, started, attempts, passed_over)
            errors[config.name] = outcome.error or "skipped"
            passed_over.append(config.name)
        raise AllProvidersFailedError(errors)

    def _result(self, config: ProviderConfig, outcome: _ProviderOutcome, started: float, attempts: int,
                passed_over: list[str]) -> LlmResult:
        reply = outcome.reply
        return LlmResult(output=reply.output, text=reply.text, provider=config.name, model=reply.model,
                         tokens_in=reply.tokens_in, tokens_out=reply.tokens_out,
                         cost_usd=config.price().cost(reply.tokens_in, reply.tokens_out),
                         latency_ms=(time.monotonic() - started) * 1000, cache="miss", attempts=attempts,
                         fallbacks=list(passed_over))

    async def _try_provider(self, config: ProviderConfig, request: LlmRequest) -> _ProviderOutcome:
        """Retries (transient errors) and repair rounds (rejected answers) on one provider."""
        outcome = _ProviderOutcome()
        malformed = repairs = 0
        asked = replace(request, max_tokens=min(request.effective_max_tokens, config.token_cap(request.task)))
        while True:
            allowed, state = await self.breaker.allow(config.name)
            if not allowed:
                # Keep the real error when this provider just failed; otherwise say why it was skipped.
                outcome.error = outcome.error or ProviderUnavailableError(
                    f"circuit breaker {state} for {config.name}", provider=config.name)
                return outcome
            outcome.attempts += 1
            error = await self._attempt(config, asked, outcome, repairing=repairs > 0)
            if error is None:
                return outcome
            outcome.error = error
            if isinstance(error, AnswerRejectedError):
                # The builtin is deterministic: asking it again returns the same answer.
                if repairs >= MAX_REPAIRS or config.is_builtin:
                    return outcome
                repairs += 1
                asked = replace(asked, messages=repair_messages(prompt_messages(asked), outcome.text, error.errors))
                continue
            malformed += isinstance(error, MalformedResponseError)
            delay = self._retry_delay(error, outcome.attempts, malformed)
            if delay is None:
                return outcome
            await self._sleep(delay)

    async def _attempt(self, config: ProviderConfig, request: LlmRequest, outcome: _ProviderOutcome,
                       repairing: bool = False) -> LlmError | None:
        """One provider call; records it and feeds the breaker. Returns the error, or None on success."""
        t0 = time.monotonic()
        try:
            async with self._slot(config):
                reply = await self._provider(config).complete(request)
        except LlmError as err:
            err.provider = err.provider or config.name
            return await self._failed(config, request, outcome.attempts, err, t0)
        except Exception as exc:  # a provider bug must not take the router down; the chain moves on
            log.exception("provider %s raised unexpectedly", config.name)
            err = ProviderRequestError(f"{config.name} raised {type(exc).__name__}: {exc}", provider=config.name)
            return await self._failed(config, request, outcome.attempts, err, t0)
        latency = (time.monotonic() - t0) * 1000
        await self.breaker.record_success(config.name)  # it answered: a bad answer is not an outage
        verdict = review(request.task, reply.output, request.input)
        if repairing:
            verdict.errors = repair_abandoned(request.task, verdict.output) + verdict.errors
        if not verdict.ok:
            outcome.text = reply.text
            err = AnswerRejectedError(verdict.errors, provider=config.name)
            log.info("%s: %s answer rejected: %s", config.name, request.task, err)
            return await self._failed(config, request, outcome.attempts, err, t0)
        reply.output = verdict.output
        outcome.reply, outcome.latency_ms = reply, latency
        await self._record(self._new_record(
            request, config.name, reply.model, outcome.attempts, "miss", "ok", tokens_in=reply.tokens_in,
            tokens_out=reply.tokens_out, cost_usd=config.price().cost(reply.tokens_in, reply.tokens_out),
            latency_ms=latency))
        return None

    async def _failed(self, config: ProviderConfig, request: LlmRequest, attempt: int, err: LlmError,
                      t0: float) -> LlmError:
        if err.health:
            state = await self.breaker.record_failure(config.name)
            if state == OPEN:
                log.warning("circuit breaker for %s is open after: %s", config.name, err)
        await self._record(self._new_record(request, config.name, config.model, attempt, "miss", "error",
                                            latency_ms=(time.monotonic() - t0) * 1000, error_kind=err.kind,
                                            error=str(err)[:500]))
        return err

    def _retry_delay(self, err: LlmError, attempt: int, malformed: int) -> float | None:
        """Seconds to wait before retrying the same provider, or None to move on to the next one."""
        s = self.settings
        if not err.retryable or attempt >= s.max_attempts or isinstance(err, ProviderTimeoutError):
            return None
        if isinstance(err, MalformedResponseError) and malformed >= s.malformed_attempts:
            return None
        if err.retry_after is not None:
            # Waiting longer than the cap holds the whole request up; a fallback answers sooner.
            return err.retry_after if err.retry_after <= s.retry_after_cap_s else None
        ceiling = min(s.backoff_max_s, s.backoff_base_s * 2 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # "equal jitter": spread, but never ~0

    def _slot(self, config: ProviderConfig) -> asyncio.Semaphore:
        """At most ``max_concurrency`` calls in flight per provider; the rest wait their turn here while
        other providers' requests go on (the router serves many requests at once)."""
        if config.name not in self._slots:
            self._slots[config.name] = asyncio.Semaphore(config.max_concurrency or 1)
        return self._slots[config.name]

    def _provider(self, config: ProviderConfig) -> Provider:
        if config.name not in self._providers:
            self._providers[config.name] = self._factory(config)
        return self._providers[config.name]

    # -- records and stats

    def _new_record(self, request: LlmRequest, provider: str, model: str, attempt: int, cache: str, outcome: str,
                    **fields: Any) -> CallRecord:
        return CallRecord(at=self.clock(), correlation_id=request.correlation_id, tenant_id=request.tenant_id,
                          task=request.task, prompt_version=request.prompt_version,
                          repair_round=request.repair_round, provider=provider, model=model, attempt=attempt,
                          cache=cache, outcome=outcome, **fields)

    async def _record(self, record: CallRecord) -> None:
        self.records.append(record)
        await self._count(record)
        if self.on_call is None:
            return
        try:
            maybe = self.on_call(record)
            if inspect.isawaitable(maybe):
                await maybe
        except Exception:  # publishing a record must not fail the call it describes
            log.exception("on_call hook failed for %s", record.correlation_id)

    def _stats_key(self, provider: str, tenant_id: str | None = None) -> str:
        scope = f"t:{tenant_id}:" if tenant_id else ""
        return f"{self.settings.key_prefix}stats:{scope}p:{provider}"

    def _stats_index(self, tenant_id: str | None = None) -> str:
        scope = f"t:{tenant_id}:" if tenant_id else ""
        return f"{self.settings.key_prefix}stats:{scope}providers"

    async def _count(self, record: CallRecord) -> None:
        increments: dict[str, float] = {}
        if record.cache != "miss":
            increments[f"cache_{record.cache}"] = 1
        else:
            increments.update(calls=1, latency_ms_total=record.latency_ms,
                              **{"successes" if record.outcome == "ok" else "errors": 1})
            if record.outcome == "ok":
                increments.update(tokens_in=record.tokens_in, tokens_out=record.tokens_out, cost_usd=record.cost_usd)
        pipe = self.redis.pipeline(transaction=False)
        for tenant in (None, record.tenant_id):
            key = self._stats_key(record.provider, tenant)
            for name, value in increments.items():
                if isinstance(value, float) or name == "cost_usd":
                    pipe.hincrbyfloat(key, name, float(value))
                else:
                    pipe.hincrby(key, name, int(value))
            pipe.sadd(self._stats_index(tenant), record.provider)
        await pipe.execute()

    async def _count_rejection(self, tenant_id: str, budget: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(f"{self.settings.key_prefix}stats:rejections", budget, 1)
        pipe.hincrby(f"{self.settings.key_prefix}stats:t:{tenant_id}:rejections", budget, 1)
        await pipe.execute()

    async def stats(self, tenant_id: str | None = None) -> dict[str, Any]:
        """Aggregates since the counters were created (all router instances): per provider, totals, budget
        rejections, breaker states, and for a tenant its current limits usage. Backs GET /api/v1/llm/stats."""
        seen = {_text(n) for n in await self.redis.smembers(self._stats_index(tenant_id))}
        names = sorted(seen | {c.name for c in self.configs})
        providers = {name: await self._provider_stats(name, tenant_id) for name in names}
        totals = {f: sum(p[f] for p in providers.values()) for f in STAT_FIELDS}
        totals["cost_usd"] = round(totals["cost_usd"], 8)
        scope = f"t:{tenant_id}:" if tenant_id else ""
        rejections = await self.redis.hgetall(f"{self.settings.key_prefix}stats:{scope}rejections")
        out: dict[str, Any] = {"tenant_id": tenant_id, "providers": providers, "totals": totals,
                               "budget_rejections": {_text(k): int(v) for k, v in rejections.items()}}
        if tenant_id:
            out["budget"] = await self.budget.usage(tenant_id)
        return out

    async def _provider_stats(self, name: str, tenant_id: str | None) -> dict[str, Any]:
        raw = {_text(k): float(v) for k, v in (await self.redis.hgetall(self._stats_key(name, tenant_id))).items()}
        stats: dict[str, Any] = {f: (round(raw.get(f, 0.0), 8) if f in ("cost_usd", "latency_ms_total")
                                     else int(raw.get(f, 0))) for f in STAT_FIELDS}
        stats["avg_latency_ms"] = round(stats["latency_ms_total"] / stats["calls"], 3) if stats["calls"] else None
        config = next((c for c in self.configs if c.name == name), None)
        stats["model"] = config.model if config else None
        stats["breaker"] = await self.breaker.state(name) if config else None
        return stats


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
