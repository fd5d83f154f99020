"""Per-provider circuit breaker whose state lives in Redis, so every router instance sees the same state.

closed --(N consecutive failures)--> open --(cool-down elapsed)--> half_open --(trial ok)--> closed
                                      ^------------------------(trial fails)----------'

Half-open admits one trial call at a time; a trial whose caller died (no success/failure reported) stops
blocking after ``trial_timeout_s``. Each transition is one Lua script, so concurrent routers never race.
Time comes from an injectable clock (passed into the scripts) rather than Redis TIME so tests can move it;
router hosts are expected to run NTP, and a second of skew only shifts a cool-down by a second.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

_ALLOW = """
local key = KEYS[1]
local now, cooldown, trial_ttl, key_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local state = redis.call('HGET', key, 'state') or 'closed'
if state == 'closed' then return {1, 'closed'} end
if state == 'open' then
  local opened = tonumber(redis.call('HGET', key, 'opened_at') or '0')
  if now < opened + cooldown then return {0, 'open'} end
else
  local trial_until = tonumber(redis.call('HGET', key, 'trial_until') or '0')
  if now < trial_until then return {0, 'half_open'} end
end
redis.call('HSET', key, 'state', 'half_open', 'trial_until', tostring(now + trial_ttl))
redis.call('EXPIRE', key, key_ttl)
return {1, 'half_open'}
"""

_FAILURE = """
local key = KEYS[1]
local now, threshold, key_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local state = redis.call('HGET', key, 'state') or 'closed'
if state == 'open' then return 'open' end
local failures = redis.call('HINCRBY', key, 'failures', 1)
if state == 'half_open' or failures >= threshold then
  redis.call('HSET', key, 'state', 'open', 'opened_at', now)
  redis.call('HDEL', key, 'trial_until')
  state = 'open'
end
redis.call('EXPIRE', key, key_ttl)
return state
"""

_SUCCESS = """
local key = KEYS[1]
local before = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('HSET', key, 'state', 'closed', 'failures', '0')
redis.call('HDEL', key, 'opened_at', 'trial_until')
redis.call('EXPIRE', key, ARGV[1])
return before
"""


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    trial_timeout_s: float = 120.0  # longer than a provider call may take
    key_ttl_s: int = 7 * 86400  # forget providers that are no longer configured


class CircuitBreaker:
    def __init__(self, redis: Any, prefix: str, settings: BreakerSettings = BreakerSettings(),
                 clock: Callable[[], float] = time.time) -> None:
        self.redis, self.prefix, self.settings, self.clock = redis, prefix, settings, clock
        # register_script only wraps the text; nothing touches Redis until a script is called.
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)

    def key(self, provider: str) -> str:
        return f"{self.prefix}breaker:{provider}"

    async def allow(self, provider: str) -> tuple[bool, str]:
        """May ``provider`` be called now? In half-open only the caller that gets True makes the trial."""
        s = self.settings
        allowed, state = await self._allow(keys=[self.key(provider)],
                                           args=[repr(self.clock()), s.cooldown_s, s.trial_timeout_s, s.key_ttl_s])
        return bool(allowed), _text(state)

    async def record_failure(self, provider: str) -> str:
        """Count a failure; returns the state afterwards (``open`` when this failure tripped it)."""
        s = self.settings
        state = await self._failure(keys=[self.key(provider)],
                                    args=[repr(self.clock()), s.failure_threshold, s.key_ttl_s])
        return _text(state)

    async def record_success(self, provider: str) -> str:
        """Close the breaker; returns the state before (``half_open`` when a trial just succeeded)."""
        return _text(await self._success(keys=[self.key(provider)], args=[self.settings.key_ttl_s]))

    async def state(self, provider: str) -> str:
        """The effective state without changing it: an open breaker past its cool-down reads as half_open."""
        raw = await self.redis.hgetall(self.key(provider))
        data = {_text(k): _text(v) for k, v in raw.items()}
        state = data.get("state", CLOSED)
        if state == OPEN and self.clock() >= float(data.get("opened_at", 0)) + self.settings.cooldown_s:
            return HALF_OPEN
        return state

    async def failures(self, provider: str) -> int:
        return int(_text(await self.redis.hget(self.key(provider), "failures") or 0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
