"""LLM providers against local fake servers that speak the real OpenAI and Anthropic wire protocols."""
from __future__ import annotations

import socket
import time
from email.utils import formatdate

import pytest

from tests.support.fake_llm import (
    FakeLlmServer,
    error,
    hang,
    malformed_body,
    missing_fields,
    non_json_content,
    ok,
    rate_limited,
    server_error,
)
from services.llm_router.pricing import Price, lookup_price, resolve_price
from services.llm_router.providers import (
    JSON_INSTRUCTION,
    AllProvidersFailedError,
    AnthropicProvider,
    BudgetExceededError,
    BuiltinProvider,
    LlmRequest,
    MalformedResponseError,
    OpenAICompatibleProvider,
    ProviderRequestError,
    ProviderUnavailableError,
    parse_json_answer,
    parse_retry_after,
)

pytestmark = pytest.mark.anyio

P01 = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders every day at 2 AM"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server():
    with FakeLlmServer() as srv:
        yield srv


def request(**kw) -> LlmRequest:
    base = dict(task="plan", tenant_id="t1", prompt_version="plan.v3", complexity="medium",
                messages=[{"role": "system", "content": "You are a planner. Reply in JSON."},
                          {"role": "user", "content": "Load orders daily"}],
                max_tokens=300, correlation_id="c-1")
    base.update(kw)
    return LlmRequest(**base)


async def call(provider, req: LlmRequest | None = None):
    try:
        return await provider.complete(req or request())
    finally:
        await provider.aclose()


def openai(srv: FakeLlmServer, **kw) -> OpenAICompatibleProvider:
    kw.setdefault("timeout_s", 5.0)
    return OpenAICompatibleProvider(srv.openai_base_url, kw.pop("api_key", "sk-test"), "gpt-4o-mini", name="oa", **kw)


def anthropic(srv: FakeLlmServer, **kw) -> AnthropicProvider:
    kw.setdefault("timeout_s", 5.0)
    return AnthropicProvider(srv.anthropic_base_url, "sk-ant-test", "claude-3-5-haiku-latest", name="an", **kw)


# ------------------------------------------------------------------------------------------- OpenAI


async def test_openai_wire_format_and_usage(server: FakeLlmServer) -> None:
    server.script(ok({"outcome": "plan", "steps": 3}, tokens_in=120, tokens_out=45))
    reply = await call(openai(server), request(temperature=0.2))

    assert reply.output == {"outcome": "plan", "steps": 3}
    assert (reply.tokens_in, reply.tokens_out, reply.usage_estimated) == (120, 45, False)
    assert reply.model == "gpt-4o-mini"
    [sent] = server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are a planner. Reply in JSON."},
                     {"role": "user", "content": "Load orders daily"}],
        "max_tokens": 300, "temperature": 0.2, "response_format": {"type": "json_object"}}


async def test_openai_json_mode_gets_the_word_json_and_a_prompt_from_input(server: FakeLlmServer) -> None:
    # OpenAI rejects json_object mode unless a message mentions JSON; an empty prompt is built from input.
    await call(openai(server), request(messages=[], input={"text": "copy a table"}, max_tokens=None))
    body = server.requests[0].body
    assert body["messages"][0] == {"role": "system", "content": JSON_INSTRUCTION}
    assert body["messages"][1]["role"] == "user" and "copy a table" in body["messages"][1]["content"]
    assert body["max_tokens"] == 1024


async def test_openai_without_key_sends_no_authorization(server: FakeLlmServer) -> None:
    await call(openai(server, api_key=None))  # Ollama / llama.cpp style
    assert "authorization" not in server.requests[0].headers


async def test_openai_missing_usage_is_estimated(server: FakeLlmServer) -> None:
    server.script(ok({"a": 1}, usage=False))
    reply = await call(openai(server))
    assert reply.usage_estimated and reply.tokens_out == len('{"a": 1}') // 4 and reply.tokens_in > 0


async def test_code_fenced_json_is_accepted(server: FakeLlmServer) -> None:
    server.script(ok('```json\n{"outcome": "plan"}\n```'))
    assert (await call(openai(server))).output == {"outcome": "plan"}


# ---------------------------------------------------------------------------------------- Anthropic


async def test_anthropic_wire_format_and_usage(server: FakeLlmServer) -> None:
    server.script(ok({"sql": "SELECT 1"}, tokens_in=200, tokens_out=17))
    reply = await call(anthropic(server), request(task="sql"))

    assert reply.output == {"sql": "SELECT 1"}
    assert (reply.tokens_in, reply.tokens_out) == (200, 17)
    [sent] = server.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.body == {"model": "claude-3-5-haiku-latest", "max_tokens": 300, "temperature": 0.0,
                         "system": "You are a planner. Reply in JSON.",
                         "messages": [{"role": "user", "content": "Load orders daily"}]}


async def test_anthropic_default_base_url() -> None:
    assert AnthropicProvider(api_key="k", model="m").base_url == "https://api.anthropic.com"


async def test_anthropic_overloaded_529_is_retryable(server: FakeLlmServer) -> None:
    server.script(error(529, "Overloaded"))
    with pytest.raises(ProviderUnavailableError) as info:
        await call(anthropic(server))
    assert info.value.status == 529 and info.value.retryable and "Overloaded" in str(info.value)


async def test_anthropic_bad_key_is_a_non_retryable_provider_fault() -> None:
    with FakeLlmServer(api_key="the-right-key") as srv:
        with pytest.raises(ProviderRequestError) as info:
            await call(anthropic(srv))
    assert info.value.status == 401 and not info.value.retryable and info.value.health
    assert "invalid x-api-key" in str(info.value)


# ------------------------------------------------------------------------------- error classification


@pytest.mark.parametrize("make", [openai, anthropic], ids=["openai", "anthropic"])
async def test_429_is_retryable_with_retry_after_seconds(server: FakeLlmServer, make) -> None:
    server.script(rate_limited("7"))
    with pytest.raises(ProviderUnavailableError) as info:
        await call(make(server))
    err = info.value
    assert (err.status, err.retry_after, err.retryable, err.health) == (429, 7.0, True, True)
    assert err.provider in ("oa", "an")


async def test_429_with_http_date_retry_after(server: FakeLlmServer) -> None:
    server.script(rate_limited(formatdate(time.time() + 5, usegmt=True)))
    with pytest.raises(ProviderUnavailableError) as info:
        await call(openai(server))
    assert 3.0 <= info.value.retry_after <= 5.0  # the date has one-second resolution


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable(server: FakeLlmServer, status: int) -> None:
    server.script(server_error(status))
    with pytest.raises(ProviderUnavailableError) as info:
        await call(openai(server))
    assert info.value.status == status and info.value.retry_after is None


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_4xx_is_not_retryable(server: FakeLlmServer, status: int) -> None:
    server.script(error(status, "context length exceeded"))
    with pytest.raises(ProviderRequestError) as info:
        await call(openai(server))
    assert info.value.status == status and not info.value.retryable
    assert "context length exceeded" in str(info.value)
    # A 400 is about this request; 404 (unknown model/route) is about the provider's configuration.
    assert info.value.health is (status == 404)


async def test_timeout_is_retryable(server: FakeLlmServer) -> None:
    server.script(hang(5))
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        await call(openai(server, timeout_s=0.3))
    assert time.monotonic() - started < 3


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = OpenAICompatibleProvider(f"http://127.0.0.1:{port}/v1", "k", "m", timeout_s=2)
    with pytest.raises(ProviderUnavailableError, match="unreachable"):
        await call(provider)


@pytest.mark.parametrize("behaviour, message", [
    (malformed_body(), "non-JSON body"),
    (missing_fields(), "lacks choices.0.message.content"),
    (non_json_content(), "not JSON"),
    (ok("[1, 2]"), "not an object"),
], ids=["body", "fields", "content", "array"])
async def test_malformed_answers(server: FakeLlmServer, behaviour, message: str) -> None:
    server.script(behaviour)
    with pytest.raises(MalformedResponseError, match=message) as info:
        await call(openai(server))
    assert info.value.retryable


async def test_anthropic_missing_content_is_malformed(server: FakeLlmServer) -> None:
    server.script(missing_fields())
    with pytest.raises(MalformedResponseError, match="content"):
        await call(anthropic(server))


# -------------------------------------------------------------------------------------- Retry-After


def test_parse_retry_after_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 42, usegmt=True), now=now) == 42.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:16:20 GMT", now=now) == 180.0  # 1_700_000_000 = 22:13:20 UTC
    assert parse_retry_after(formatdate(now - 100, usegmt=True), now=now) == 0.0  # already past


@pytest.mark.parametrize("value", [None, "", "soon", "Mon, 99 Foo 2023"])
def test_parse_retry_after_rejects_garbage(value) -> None:
    assert parse_retry_after(value) is None


def test_parse_json_answer() -> None:
    assert parse_json_answer('  {"a": 1} ', "p") == {"a": 1}
    assert parse_json_answer('```\n{"a": 1}\n```', "p") == {"a": 1}
    with pytest.raises(MalformedResponseError):
        parse_json_answer("Here you go: {", "p")


# ------------------------------------------------------------------------------------------ builtin


async def test_builtin_plans_a_public_case_offline() -> None:
    req = request(messages=[], input={"text": P01})
    reply = await BuiltinProvider().complete(req)
    assert reply.output["outcome"] == "plan"
    assert reply.output["spec"]["schedule"]["cron"] == "0 2 * * *"
    assert reply.model == "builtin-v1"
    assert reply.tokens_out == len(reply.text) // 4 and reply.tokens_in > 0


async def test_builtin_generates_sql_from_a_spec() -> None:
    plan = (await BuiltinProvider().complete(request(messages=[], input={"text": P01}))).output
    columns = [["id", "integer"], {"name": "amount", "type": "numeric(12,2)"}, ["created_at", "timestamp"]]
    reply = await BuiltinProvider().complete(request(task="sql", messages=[], input={
        "spec": plan["spec"], "source_columns": columns}))
    assert "shop.orders" in reply.output["extract_sql"]
    assert reply.output["target_ddl"] and "analytics.orders" in reply.output["target_ddl"]


async def test_builtin_reflect_turns_failures_into_instructions() -> None:
    failures = [{"check": "sql_parse", "message": "unexpected token", "where": "transform_sql"}, "row count mismatch"]
    reply = await BuiltinProvider().complete(request(task="reflect", messages=[], input={"failures": failures}))
    assert reply.output["outcome"] == "repair"
    assert reply.output["instructions"] == ["Fix sql_parse in transform_sql: unexpected token",
                                            "Fix: row count mismatch"]
    accepted = await BuiltinProvider().complete(request(task="reflect", messages=[], input={"failures": []}))
    assert accepted.output == {"outcome": "accept", "instructions": [], "quality_score": 1.0}


async def test_builtin_is_honest_about_unsupported_tasks_and_bad_input() -> None:
    reply = await BuiltinProvider().complete(request(task="python", messages=[]))
    assert reply.output["outcome"] == "unsupported" and "python" in reply.output["reason"]
    with pytest.raises(ProviderRequestError, match="input\\['text'\\]"):
        await BuiltinProvider().complete(request(messages=[], input={}))
    with pytest.raises(ProviderRequestError, match="builtin cannot answer task 'sql'"):
        await BuiltinProvider().complete(request(task="sql", messages=[], input={"spec": {"nonsense": 1}}))


# ----------------------------------------------------------------------------------- types and errors


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        request(task="poem")
    with pytest.raises(ValueError, match="complexity"):
        request(complexity="extreme")
    with pytest.raises(ValueError, match="bad message"):
        request(messages=[{"role": "tool", "content": "x"}])
    req = request(repair_round=2)
    assert LlmRequest.from_dict({**req.to_dict(), "unknown_field": 1}) == req


def test_error_messages_are_clear() -> None:
    err = BudgetExceededError(tenant_id="acme", budget="daily_usd", limit=5.0, current=5.25)
    assert str(err) == "tenant 'acme' exceeded its daily_usd budget (daily spend (USD)): limit 5, current 5.25"
    rpm = BudgetExceededError(tenant_id="acme", budget="rpm", limit=60, current=60, requested=1, retry_after=12.4)
    assert "requests per minute" in str(rpm) and "resets in 12 s" in str(rpm)
    failed = AllProvidersFailedError({"a": ProviderUnavailableError("HTTP 503 from a: down"),
                                      "b": MalformedResponseError("b: answer is not JSON")})
    assert str(failed) == ("all LLM providers failed: a: ProviderUnavailableError: HTTP 503 from a: down; "
                           "b: MalformedResponseError: b: answer is not JSON")


def test_pricing() -> None:
    assert lookup_price("gpt-4o-mini-2024-07-18") == Price(0.00015, 0.0006)  # longest prefix, not gpt-4o
    assert lookup_price("llama3.1:8b") == Price(0.0, 0.0)
    assert resolve_price("gpt-4o", 1.0, None) == Price(1.0, 0.01)
    assert Price(1.0, 2.0).cost(1500, 500) == 2.5


def test_provider_repr_hides_the_key() -> None:
    assert "sk-secret" not in repr(OpenAICompatibleProvider("http://x/v1", "sk-secret", "m"))
