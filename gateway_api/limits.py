"""Request limits kept in Redis, so every gateway process of a deployment shares them.

- ``admit``: a token bucket per principal (refilled at ``rate_limit_per_s`` up to ``rate_limit_burst``);
  an empty bucket answers 429 with Retry-After. The auth dependency calls it once the principal is known.
- ``check_source`` / ``auth_failed``: failed authentications counted per source address in a fixed
  window; a source over ``auth_failures_max`` is refused with 429 before its credentials are even looked
  at, which makes guessing keys slow.

Keys live in the deployment's read-model namespace (``{ns}limit:...``) and expire by themselves.
"""
from __future__ import annotations

import math

from fastapi import Request

from gateway_api.problems import Problem

# Refill, take one token if there is one, and say how long until the next one: atomic, and timed by the
# Redis clock so gateways with skewed clocks agree. Returns {allowed, milliseconds to wait}.
_BUCKET = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed, wait_ms = 0, 0
if tokens >= 1 then
  tokens, allowed = tokens - 1, 1
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait_ms}
"""


def _deps(request: Request):
    return request.app.state.deps


def source_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def principal_id(request: Request, principal) -> str:
    """Who a limit counts against: the principal, or the source address for a request without one."""
    if principal is None:
        return f"addr:{source_address(request)}"
    return f"{principal.tenant}:{principal.subject}"


def too_many(detail: str, retry_after_s: float) -> Problem:
    retry = max(1, math.ceil(retry_after_s))
    return Problem(429, "Too many requests", detail, headers={"Retry-After": str(retry)},
                   retry_after_s=retry)


async def admit(request: Request, principal) -> None:
    """Take one request from the principal's bucket; 429 with Retry-After when it is empty."""
    deps = _deps(request)
    s = deps.settings
    key = f"{deps.keys.ns}limit:rate:{principal_id(request, principal)}"
    allowed, wait_ms = await deps.redis.register_script(_BUCKET)(keys=[key],
                                                                 args=[s.rate_limit_per_s, s.rate_limit_burst])
    if not int(allowed):
        raise too_many(f"more than {s.rate_limit_burst} requests in a burst or {s.rate_limit_per_s:g} per "
                       "second sustained for this principal; retry later", int(wait_ms) / 1000)


def _failures_key(request: Request) -> str:
    return f"{_deps(request).keys.ns}limit:authfail:{source_address(request)}"


async def check_source(request: Request) -> None:
    """Refuse (429) a source address that failed to authenticate too often in the current window."""
    deps = _deps(request)
    key = _failures_key(request)
    failures = await deps.redis.get(key)
    if failures is not None and int(failures) >= deps.settings.auth_failures_max:
        ttl = await deps.redis.ttl(key)
        raise too_many(f"too many failed authentications from {source_address(request)}; retry later",
                       ttl if ttl and ttl > 0 else deps.settings.auth_failures_window_s)


async def auth_failed(request: Request) -> None:
    """Count one failed authentication against the request's source address."""
    deps = _deps(request)
    key = _failures_key(request)
    async with deps.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, deps.settings.auth_failures_window_s, nx=True)
        await pipe.execute()
