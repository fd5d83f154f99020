"""llm-router: routes agents' LLM requests to the builtin provider, OpenAI-compatible servers or Anthropic.

The public names below resolve lazily so that importing a sub-package (``services.llm_router.providers``)
does not drag in httpx, redis or qdrant-client.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LlmRequest": "providers", "LlmResult": "providers", "ProviderReply": "providers",
    "LlmError": "providers", "BudgetExceededError": "providers", "ProviderUnavailableError": "providers",
    "ProviderRequestError": "providers", "AllProvidersFailedError": "providers",
    "MalformedResponseError": "providers", "BuiltinProvider": "providers",
    "OpenAICompatibleProvider": "providers", "AnthropicProvider": "providers",
    "parse_retry_after": "providers",
    "Router": "router", "RouterSettings": "router", "ProviderConfig": "router", "CallRecord": "router",
    "provider_configs_from_json": "router",
    "BudgetPolicy": "budget", "TenantLimits": "budget",
    "BreakerSettings": "breaker", "CircuitBreaker": "breaker",
    "SemanticCache": "cache", "ExactCache": "cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
