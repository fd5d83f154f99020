"""Structured output as each provider kind spells it on the wire, against local servers speaking the real
protocols: OpenAI/vLLM ``json_schema``, llama.cpp ``json_object`` + ``schema`` (streamed, so a timed-out
call can be abandoned), Ollama's own ``/api/chat`` with ``format``; JSON mode for the others."""
import pytest

from services.llm_router.contract import plan_schema, sql_schema
from services.llm_router.providers import LlmRequest, OllamaProvider, ProviderTimeoutError
from services.llm_router.router import ProviderConfig, build_provider
from tests.support.fake_llm import FakeLlmServer, hang, ok

pytestmark = pytest.mark.anyio
ANSWER = {"outcome": "clarify", "question": "Which table?", "missing": ["source.table"]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server():
    with FakeLlmServer(default=ok(ANSWER, tokens_in=120, tokens_out=30)) as srv:
        yield srv


def request(task: str = "plan") -> LlmRequest:
    return LlmRequest(task=task, tenant_id="t1", prompt_version="plan-v2", max_tokens=700,
                      messages=[{"role": "system", "content": "Answer in JSON."},
                                {"role": "user", "content": "Move some data"}])


async def complete(kind: str, server: FakeLlmServer, task: str = "plan", **kw):
    config = ProviderConfig(name=kind, kind=kind, model="m", base_url=server.openai_base_url, **kw)
    provider = build_provider(config)
    try:
        return await provider.complete(request(task))
    finally:
        await provider.aclose()


@pytest.mark.parametrize("kind", ["openai", "vllm", "openai_compatible"])
async def test_openai_and_vllm_get_the_tasks_json_schema(server, kind):
    reply = await complete(kind, server)
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "aietl_plan", "schema": plan_schema(), "strict": False}}
    assert "stream" not in body and reply.output == ANSWER and (reply.tokens_in, reply.tokens_out) == (120, 30)


async def test_llamacpp_gets_json_object_with_the_schema_and_streams(server):
    reply = await complete("llamacpp", server, task="sql")
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_object", "schema": sql_schema()}
    assert body["stream"] is True and body["max_tokens"] == 700
    assert reply.output == ANSWER and reply.usage_estimated  # the stream carried no usage block


async def test_ollama_uses_its_own_api_with_format(server):
    reply = await complete("ollama", server)
    recorded = server.requests[0]
    assert recorded.path == "/api/chat"
    assert recorded.body["format"] == plan_schema() and recorded.body["stream"] is False
    assert recorded.body["options"] == {"num_predict": 700, "temperature": 0.0}
    assert reply.output == ANSWER and (reply.tokens_in, reply.tokens_out) == (120, 30)


@pytest.mark.parametrize("kind", ["deepseek", "qwen"])
async def test_json_mode_for_servers_without_schemas(server, kind):
    await complete(kind, server)
    assert server.requests[0].body["response_format"] == {"type": "json_object"}


async def test_a_task_without_a_contract_is_plain_json_mode(server):
    await complete("openai", server, task="qa")
    assert server.requests[0].body["response_format"] == {"type": "json_object"}


def test_local_kinds_get_long_timeouts_and_one_call_at_a_time():
    local = ProviderConfig(name="l", kind="llamacpp", model="m", base_url="http://x/v1")
    remote = ProviderConfig(name="r", kind="openai", model="m", base_url="http://x/v1")
    assert (local.timeout_s, local.max_concurrency) == (300.0, 1)
    assert (remote.timeout_s, remote.max_concurrency) == (60.0, 8)
    assert ProviderConfig.from_dict({"name": "o", "kind": "ollama", "model": "m", "base_url": "http://x/v1",
                                     "timeout_s": 90, "tasks": ["plan"]}).answers("sql") is False
    assert OllamaProvider("http://x:11434/v1", None, "m").base_url == "http://x:11434"


async def test_a_streamed_call_past_its_deadline_is_abandoned(server):
    server.script(hang(10))
    with pytest.raises(ProviderTimeoutError, match="timed out after 0.3 s"):
        await complete("llamacpp", server, timeout_s=0.3)
