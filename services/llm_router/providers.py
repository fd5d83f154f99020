"""LLM request/result types, the router's errors and the providers (builtin, OpenAI-compatible, Anthropic).

A provider turns one :class:`LlmRequest` into one :class:`ProviderReply` (a parsed JSON answer plus token
usage) or raises an :class:`LlmError` that says whether trying again may help. Retries, fallback, caching,
budgets and cost belong to :mod:`services.llm_router.router`, not here.

Nothing runs at import time: HTTP clients are built on first use and closed by :meth:`aclose`.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Protocol

import httpx

TASKS = ("plan", "sql", "python", "schema", "qa", "reflect")
COMPLEXITIES = ("low", "medium", "high")
ROLES = ("system", "user", "assistant")
CACHE_STATUSES = ("miss", "exact", "semantic")
DEFAULT_MAX_TOKENS = 1024
JSON_INSTRUCTION = "Answer with a single JSON object and nothing else."


# --------------------------------------------------------------------------------------------- types


@dataclass
class LlmRequest:
    """What an agent asks the router. ``input`` is the structured form the builtin provider compiles from;
    ``messages`` is the rendered prompt HTTP providers receive (built from ``input`` when empty)."""

    task: str
    tenant_id: str
    prompt_version: str
    complexity: str = "medium"
    messages: list[dict[str, str]] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)
    repair_round: int = 0
    max_tokens: Optional[int] = None
    temperature: float = 0.0
    correlation_id: str = ""
    preferred_provider: Optional[str] = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.complexity not in COMPLEXITIES:
            raise ValueError(f"unknown complexity {self.complexity!r}; expected one of {', '.join(COMPLEXITIES)}")
        if not self.tenant_id:
            raise ValueError("tenant_id is required")
        if self.repair_round < 0:
            raise ValueError("repair_round must be >= 0")
        for m in self.messages:
            if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"bad message {m!r}: need role in {ROLES} and a string content")

    @property
    def effective_max_tokens(self) -> int:
        return self.max_tokens or DEFAULT_MAX_TOKENS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LlmRequest":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class LlmResult:
    """The router's answer: the parsed JSON ``output`` and how it was obtained."""

    output: dict[str, Any]
    text: str
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    cache: str = "miss"
    attempts: int = 1
    fallbacks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProviderReply:
    """One successful provider call, before the router adds cost, latency and cache status."""

    output: dict[str, Any]
    text: str
    model: str
    tokens_in: int
    tokens_out: int
    usage_estimated: bool = False  # the server sent no usage block; tokens are len(text)//4


# -------------------------------------------------------------------------------------------- errors


class LlmError(Exception):
    """Base of every router error.

    ``retryable``: the same call may succeed later. ``health``: the failure says something about the
    provider (counts towards its circuit breaker) rather than about this one request.
    """

    retryable = False
    health = False

    def __init__(self, message: str, *, provider: str | None = None, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retry_after = retry_after

    @property
    def kind(self) -> str:
        return type(self).__name__


class ProviderUnavailableError(LlmError):
    """429, 5xx, timeout or connection failure: try again (after ``retry_after`` when the server said so)."""

    retryable = True
    health = True


class ProviderTimeoutError(ProviderUnavailableError):
    """No answer within the provider's deadline. The request was abandoned (its connection closed);
    the router moves to the next provider rather than queueing the same slow work again."""


class AnswerRejectedError(LlmError):
    """The provider answered, but the answer breaks the task's contract (``errors``: "path: message")."""

    def __init__(self, errors: list[str], **kw: Any) -> None:
        self.errors = list(errors)
        super().__init__("answer rejected: " + "; ".join(self.errors)[:1500], **kw)


class ProviderRequestError(LlmError):
    """A 4xx other than 429/408: this request will not succeed on this provider; fall back at once."""

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        # Bad key, forbidden or unknown model/route are the provider's (mis)configuration, not the request's.
        self.health = kw.get("status") in (401, 403, 404)


class MalformedResponseError(LlmError):
    """The provider answered, but not with the expected shape or not with JSON: retried once, then fallback."""

    retryable = True
    health = True


class BudgetExceededError(LlmError):
    """A tenant limit (rpm, tpm or daily spend) refuses the request before any provider is called."""

    def __init__(self, *, tenant_id: str, budget: str, limit: float, current: float, requested: float = 0.0,
                 retry_after: float | None = None) -> None:
        self.tenant_id, self.budget, self.limit, self.current, self.requested = (
            tenant_id, budget, limit, current, requested)
        self.retry_after = retry_after
        super().__init__(self._describe(), retry_after=retry_after)

    def _describe(self) -> str:
        what = {"rpm": "requests per minute", "tpm": "tokens per minute",
                "daily_usd": "daily spend (USD)"}.get(self.budget, self.budget)
        text = (f"tenant {self.tenant_id!r} exceeded its {self.budget} budget ({what}): "
                f"limit {self.limit:g}, current {self.current:g}")
        if self.requested:
            text += f", this request needs {self.requested:g}"
        if self.retry_after is not None:
            text += f"; resets in {self.retry_after:.0f} s"
        return text


class AllProvidersFailedError(LlmError):
    """Every candidate failed or was skipped; ``errors`` maps provider name to its last error."""

    def __init__(self, errors: dict[str, LlmError | str]) -> None:
        self.errors = errors
        parts = [f"{name}: {_describe_error(err)}" for name, err in errors.items()]
        super().__init__("all LLM providers failed: " + ("; ".join(parts) or "no provider configured"))
        # Every provider answered and every answer was unusable: asking again will not help, the user must
        # say more. Otherwise some provider was down or busy: the same request may succeed later.
        self.rejected = bool(errors) and all(isinstance(e, AnswerRejectedError) for e in errors.values())
        self.retryable = any(isinstance(e, LlmError) and e.retryable for e in errors.values())

    def rejection_errors(self) -> list[str]:
        return [line for e in self.errors.values() if isinstance(e, AnswerRejectedError) for line in e.errors]


def _describe_error(err: LlmError | str) -> str:
    return err if isinstance(err, str) else f"{err.kind}: {err}"


# --------------------------------------------------------------------------------------- wire helpers


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date; None when absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate may hand back a naive value for "-0000"
        when = when.replace(tzinfo=timezone.utc)
    ref = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return max(0.0, (when - ref).total_seconds())


def parse_json_answer(text: str, provider: str) -> dict[str, Any]:
    """The model's text as a JSON object. Markdown code fences are tolerated (models add them even when
    told not to); anything else that is not a JSON object is malformed."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0].strip()
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise MalformedResponseError(f"model answer is not JSON ({exc}): {text[:200]!r}", provider=provider)
    if not isinstance(value, dict):
        raise MalformedResponseError(f"model answer is JSON but not an object: {text[:200]!r}", provider=provider)
    return value


def estimate_tokens(text: str) -> int:
    """The usual ~4 characters per token; used by the builtin provider and for pre-call budget checks."""
    return len(text) // 4


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def prompt_messages(request: LlmRequest) -> list[dict[str, str]]:
    """The messages sent to an HTTP model. JSON mode needs the word "JSON" in the prompt (OpenAI returns 400
    otherwise), so an instruction is prepended when no message mentions it."""
    messages = [dict(m) for m in request.messages] or [
        {"role": "user", "content": f"Task: {request.task}\nInput:\n{canonical_json(request.input)}"}]
    if not any("json" in m["content"].lower() for m in messages):
        messages.insert(0, {"role": "system", "content": JSON_INSTRUCTION})
    return messages


def _error_message(response: httpx.Response) -> str:
    """The server's own error text (OpenAI and Anthropic both use ``{"error": {"message": ...}}``)."""
    try:
        err = response.json().get("error")
    except (ValueError, AttributeError):
        err = None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])[:300]
    return response.text[:300]


def classify_http_error(response: httpx.Response, provider: str) -> LlmError:
    """429/408/5xx are worth retrying (Retry-After honoured); other 4xx are not."""
    status = response.status_code
    message = f"HTTP {status} from {provider}: {_error_message(response)}"
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return ProviderUnavailableError(message, provider=provider, status=status, retry_after=retry_after)
    return ProviderRequestError(message, provider=provider, status=status)


def _get(data: Any, *path: Any) -> Any:
    """``data[p0][p1]...`` or a KeyError naming the missing field."""
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            raise KeyError(".".join(str(p) for p in path)) from None
    return data


# ------------------------------------------------------------------------------------------ providers


class Provider(Protocol):
    name: str
    model: str

    async def complete(self, request: LlmRequest) -> ProviderReply: ...

    async def aclose(self) -> None: ...


class _HttpProvider:
    """Shared HTTP plumbing: a lazily built client, POST, status and transport error classification."""

    def __init__(self, *, name: str, base_url: str, api_key: str | None, model: str,
                 timeout_s: float = 60.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name, self.base_url, self.api_key, self.model = name, base_url.rstrip("/"), api_key, model
        self.timeout_s = timeout_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r})"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport)
        return self._client

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        try:
            # One deadline for the whole call (httpx's is per read): when it passes the request is
            # cancelled and its connection closed, so a server that notices (streaming) stops generating.
            async with asyncio.timeout(self.timeout_s):
                if body.get("stream"):
                    return await self._post_stream(path, body, headers)
                response = await self._http().post(self.base_url + path, json=body, headers=headers)
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise ProviderTimeoutError(f"{self.name} timed out after {self.timeout_s:g} s ({type(exc).__name__})",
                                           provider=self.name) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailableError(f"{self.name} unreachable: {type(exc).__name__}: {exc}",
                                           provider=self.name) from exc
        if response.status_code >= 400:
            raise classify_http_error(response, self.name)
        try:
            data = response.json()
        except ValueError as exc:
            raise MalformedResponseError(f"{self.name} sent a non-JSON body: {response.text[:200]!r}",
                                         provider=self.name, status=response.status_code) from exc
        if not isinstance(data, dict):
            raise MalformedResponseError(f"{self.name} sent JSON that is not an object", provider=self.name)
        return data

    async def _post_stream(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """An OpenAI server-sent-events answer, assembled into the non-streaming shape."""
        parts: list[str] = []
        data: dict[str, Any] = {}
        async with self._http().stream("POST", self.base_url + path, json=body, headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                raise classify_http_error(response, self.name)
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                try:
                    chunk = json.loads(line[5:])
                except ValueError as exc:
                    raise MalformedResponseError(f"{self.name} sent a bad event: {line[:200]!r}",
                                                 provider=self.name) from exc
                data.update({k: v for k, v in chunk.items() if k in ("model", "usage") and v})
                for choice in chunk.get("choices") or []:
                    parts.append(((choice.get("delta") or {}).get("content")) or "")
        return {**data, "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)}}]}

    def _reply(self, data: dict[str, Any], text: Any, usage: tuple[Any, Any] | None,
               request_chars: int) -> ProviderReply:
        if not isinstance(text, str):
            raise MalformedResponseError(f"{self.name}: answer text is not a string", provider=self.name)
        output = parse_json_answer(text, self.name)
        model = str(data.get("model") or self.model)
        if usage is None or not all(isinstance(v, int) for v in usage):
            # Some local servers omit usage; estimating keeps budgets and cost meaningful.
            return ProviderReply(output, text, model, request_chars // 4, estimate_tokens(text), True)
        return ProviderReply(output, text, model, usage[0], usage[1])

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class OpenAICompatibleProvider(_HttpProvider):
    """``POST {base_url}/chat/completions`` in JSON mode: OpenAI, DeepSeek, Qwen, vLLM, Ollama, llama.cpp.

    ``base_url`` includes the version segment, e.g. ``https://api.openai.com/v1``.
    """

    STRUCTURED = ("json_object", "json_schema", "llamacpp")

    def __init__(self, base_url: str, api_key: str | None, model: str, name: str = "openai", *,
                 structured: str = "json_object", stream: bool = False, **kw: Any) -> None:
        super().__init__(name=name, base_url=base_url, api_key=api_key, model=model, **kw)
        if structured not in self.STRUCTURED:
            raise ValueError(f"structured must be one of {self.STRUCTURED}")
        self.structured, self.stream = structured, stream

    def build_body(self, request: LlmRequest) -> dict[str, Any]:
        body = {"model": self.model, "messages": prompt_messages(request),
                "max_tokens": request.effective_max_tokens, "temperature": request.temperature,
                "response_format": self.response_format(request.task)}
        if self.stream:
            body["stream"] = True
        return body

    def response_format(self, task: str) -> dict[str, Any]:
        """Structured output as each server family spells it: OpenAI/vLLM take ``json_schema``,
        llama.cpp's servers a ``schema`` beside ``json_object`` (compiled to a grammar); others JSON mode."""
        from .contract import answer_schema

        schema = answer_schema(task)
        if schema is None or self.structured == "json_object":
            return {"type": "json_object"}
        if self.structured == "llamacpp":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": f"aietl_{task}", "schema": schema, "strict": False}}

    def headers(self) -> dict[str, str]:
        # Local servers (Ollama, llama.cpp) need no key; sending an empty Bearer would confuse some proxies.
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    PATH = "/chat/completions"
    TEXT = ("choices", 0, "message", "content")

    @staticmethod
    def usage(data: dict[str, Any]) -> tuple[Any, Any] | None:
        usage = data.get("usage") or {}
        return (usage.get("prompt_tokens"), usage.get("completion_tokens")) if usage else None

    async def complete(self, request: LlmRequest) -> ProviderReply:
        body = self.build_body(request)
        data = await self._post(self.PATH, body, self.headers())
        try:
            text = _get(data, *self.TEXT)
        except KeyError as exc:
            raise MalformedResponseError(f"{self.name}: response lacks {exc.args[0]}", provider=self.name) from None
        return self._reply(data, text, self.usage(data), len(canonical_json(body["messages"])))


class OllamaProvider(OpenAICompatibleProvider):
    """``POST {base_url}/api/chat``, Ollama's own API: ``format`` takes the answer's JSON Schema."""

    def __init__(self, base_url: str, api_key: str | None, model: str, name: str = "ollama", **kw: Any) -> None:
        # Configs often carry the OpenAI-compatible base (…/v1); the native API lives beside it.
        base = base_url.rstrip("/")
        super().__init__(name=name, base_url=base[:-3] if base.endswith("/v1") else base, api_key=api_key,
                         model=model, **kw)

    def build_body(self, request: LlmRequest) -> dict[str, Any]:
        from .contract import answer_schema

        return {"model": self.model, "messages": prompt_messages(request), "stream": False,
                "format": answer_schema(request.task) or "json",
                "options": {"num_predict": request.effective_max_tokens, "temperature": request.temperature}}

    PATH = "/api/chat"
    TEXT = ("message", "content")

    @staticmethod
    def usage(data: dict[str, Any]) -> tuple[Any, Any] | None:
        return (data.get("prompt_eval_count"), data.get("eval_count")) if "eval_count" in data else None


class AnthropicProvider(_HttpProvider):
    """``POST {base_url}/v1/messages`` (Anthropic Messages API, version 2023-06-01)."""

    API_VERSION = "2023-06-01"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, model: str = "claude-3-5-haiku-latest",
                 name: str = "anthropic", **kw: Any) -> None:
        super().__init__(name=name, base_url=base_url or "https://api.anthropic.com", api_key=api_key,
                         model=model, **kw)

    def build_body(self, request: LlmRequest) -> dict[str, Any]:
        messages = prompt_messages(request)
        # Anthropic takes the system prompt as a top-level field, not as a message.
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        body: dict[str, Any] = {"model": self.model, "max_tokens": request.effective_max_tokens,
                                "messages": [m for m in messages if m["role"] != "system"],
                                "temperature": request.temperature}
        if system:
            body["system"] = system
        return body

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key or "", "anthropic-version": self.API_VERSION}

    async def complete(self, request: LlmRequest) -> ProviderReply:
        body = self.build_body(request)
        data = await self._post("/v1/messages", body, self.headers())
        try:
            blocks = _get(data, "content")
            text = next((b.get("text") for b in blocks if isinstance(b, dict) and b.get("type", "text") == "text"),
                        None) if isinstance(blocks, list) else None
            if text is None:
                raise KeyError("content[].text")
        except KeyError as exc:
            raise MalformedResponseError(f"{self.name}: response lacks {exc.args[0]}", provider=self.name) from None
        usage = data.get("usage") or {}
        tokens = (usage.get("input_tokens"), usage.get("output_tokens")) if usage else None
        return self._reply(data, text, tokens, len(canonical_json(body)))


WARM_UP_TEXT = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders"


class BuiltinProvider:
    """The offline, deterministic provider (services.llm_router.builtin): no key, no network, cost 0."""

    model = "builtin-v1"

    def __init__(self, name: str = "builtin") -> None:
        self.name = name

    async def complete(self, request: LlmRequest) -> ProviderReply:
        # The compilers are pure CPU work; a thread keeps the event loop (and Kafka heartbeats) responsive.
        output = await asyncio.to_thread(self._answer, request)
        text = canonical_json(output)
        prompt = canonical_json({"messages": request.messages, "input": request.input})
        return ProviderReply(output, text, self.model, estimate_tokens(prompt), estimate_tokens(text))

    def _answer(self, request: LlmRequest) -> dict[str, Any]:
        handler = {"plan": self._plan, "sql": self._sql, "reflect": self._reflect}.get(request.task)
        if handler is None:
            return {"outcome": "unsupported", "provider": self.name,
                    "reason": f"the builtin provider does not answer task {request.task!r}; configure an LLM "
                              "provider for it"}
        try:
            return handler(request.input)
        except LlmError:
            raise
        except Exception as exc:  # the compilers validate their input; say which and why, never guess
            raise ProviderRequestError(f"builtin cannot answer task {request.task!r}: {type(exc).__name__}: {exc}",
                                       provider=self.name) from exc

    @staticmethod
    def _plan(data: dict[str, Any]) -> dict[str, Any]:
        from services.understanding import compile_request

        text = data.get("text")
        if not isinstance(text, str):
            raise ProviderRequestError("builtin task 'plan' needs input['text'] (the user's request)")
        return compile_request(text, default_connections=data.get("default_connections"),
                               catalog=data.get("catalog"), answers=data.get("answers"))

    @staticmethod
    def _sql(data: dict[str, Any]) -> dict[str, Any]:
        from services.spec_compiler import generate_sql

        if not isinstance(data.get("spec"), dict):
            raise ProviderRequestError("builtin task 'sql' needs input['spec'] (the pipeline spec)")
        columns = data.get("source_columns")
        columns = [_column_pair(c) for c in columns] if columns is not None else None
        joins = {str(t): [_column_pair(c) for c in cols]
                 for t, cols in (data.get("join_columns") or {}).items() if cols}
        return generate_sql(data["spec"], columns, joins or None, data.get("source_ranges") or None)

    def warm_up(self) -> None:
        """Compile one request and its SQL: the understanding's and the compiler's imports, patterns and
        lookup tables are built here, at worker start, rather than in the first user's draft."""
        plan = self._plan({"text": WARM_UP_TEXT})
        if plan.get("outcome") == "plan":
            self._sql({"spec": plan["spec"]})

    @staticmethod
    def _reflect(data: dict[str, Any]) -> dict[str, Any]:
        failures = data.get("failures") or []
        instructions = [repair_instruction(f) for f in failures]
        return {"outcome": "repair" if instructions else "accept", "instructions": instructions,
                "quality_score": 1.0 if not instructions else round(max(0.0, 1.0 - 0.2 * len(instructions)), 2)}

    async def aclose(self) -> None:
        return None


def _column_pair(column: Any) -> tuple[str, str]:
    """JSON/Avro carry a source column as ``[name, type]`` or ``{"name", "type"}``; the compiler wants a pair."""
    if isinstance(column, dict):
        return str(column["name"]), str(column["type"])
    name, type_ = column
    return str(name), str(type_)


def repair_instruction(failure: Any) -> str:
    """One QA failure (a string or a ``{check, message, ...}`` dict) as an imperative repair instruction."""
    if not isinstance(failure, dict):
        return f"Fix: {failure}"
    check = failure.get("check") or failure.get("rule") or failure.get("code") or "check"
    message = failure.get("message") or failure.get("error") or failure.get("detail") or "failed"
    where = failure.get("where") or failure.get("location") or failure.get("field") or failure.get("artifact")
    text = f"Fix {check}" + (f" in {where}" if where else "") + f": {message}"
    hint = failure.get("hint") or failure.get("suggestion")
    return text + (f" ({hint})" if hint else "")
