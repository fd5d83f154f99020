"""Per-tenant request rate (rpm), token rate (tpm) and daily spend limits, counted in Redis.

Windows are fixed: the current UTC minute for rpm/tpm and the current UTC day for spend, so every router
instance shares the same counters. :meth:`BudgetGuard.admit` runs before any provider is called: it checks
all three limits and, when they pass, counts the request and reserves its estimated prompt tokens in one
Lua script (no check-then-act race between routers). :meth:`BudgetGuard.settle` replaces the estimate with
the real usage afterwards. Spend is a soft limit: a request is admitted while the day's spend is below the
limit, so the last admitted request may overshoot it by its own cost.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from .providers import BudgetExceededError

_ADMIT = """
local rpm_limit, tpm_limit, usd_limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local est, minute_ttl, day_ttl = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local rpm = tonumber(redis.call('GET', KEYS[1]) or '0')
if rpm_limit >= 0 and rpm + 1 > rpm_limit then return {'rpm', ARGV[1], tostring(rpm), '1'} end
local tpm = tonumber(redis.call('GET', KEYS[2]) or '0')
if tpm_limit >= 0 and tpm + est > tpm_limit then return {'tpm', ARGV[2], tostring(tpm), ARGV[4]} end
local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
if usd_limit >= 0 and spent >= usd_limit then return {'daily_usd', ARGV[3], tostring(spent), '0'} end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], minute_ttl)
redis.call('INCRBY', KEYS[2], est)
redis.call('EXPIRE', KEYS[2], minute_ttl)
return {}
"""

UNLIMITED = -1


@dataclass(frozen=True)
class TenantLimits:
    """None = not limited (or, in a per-tenant override, inherit the default); a negative value = unlimited."""

    rpm: Optional[int] = None
    tpm: Optional[int] = None
    daily_usd: Optional[float] = None

    def over(self, default: "TenantLimits") -> "TenantLimits":
        return replace(default, **{f.name: getattr(self, f.name) for f in fields(self)
                                   if getattr(self, f.name) is not None})


@dataclass
class BudgetPolicy:
    default: TenantLimits = field(default_factory=TenantLimits)
    per_tenant: dict[str, TenantLimits] = field(default_factory=dict)

    def limits_for(self, tenant_id: str) -> TenantLimits:
        override = self.per_tenant.get(tenant_id)
        return override.over(self.default) if override else self.default

    @classmethod
    def from_settings(cls, settings: Any) -> "BudgetPolicy":
        default = TenantLimits(getattr(settings, "llm_tenant_rpm", None), getattr(settings, "llm_tenant_tpm", None),
                               getattr(settings, "llm_tenant_daily_usd", None))
        raw = getattr(settings, "llm_tenant_limits_json", None)
        per_tenant = {t: TenantLimits(**v) for t, v in json.loads(raw).items()} if raw else {}
        return cls(default, per_tenant)


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    tpm_key: str
    reserved_tokens: int


class BudgetGuard:
    def __init__(self, redis: Any, prefix: str, policy: BudgetPolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis, self.prefix, self.policy, self.clock = redis, prefix, policy or BudgetPolicy(), clock
        self._admit = redis.register_script(_ADMIT)

    def _keys(self, tenant_id: str) -> tuple[str, str, str]:
        now = self.clock()
        minute = int(now // 60)
        day = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%d")
        base = f"{self.prefix}budget:{tenant_id}:"
        return f"{base}rpm:{minute}", f"{base}tpm:{minute}", f"{base}usd:{day}"

    async def admit(self, tenant_id: str, estimated_tokens: int) -> Reservation:
        """Count one request and reserve its prompt tokens, or raise :class:`BudgetExceededError`."""
        limits = self.policy.limits_for(tenant_id)
        keys = self._keys(tenant_id)
        refused = await self._admit(keys=list(keys), args=[
            _limit(limits.rpm), _limit(limits.tpm), _limit(limits.daily_usd), int(estimated_tokens), 120, 2 * 86400])
        if refused:
            budget, limit, current, requested = (_text(v) for v in refused)
            raise BudgetExceededError(tenant_id=tenant_id, budget=budget, limit=float(limit), current=float(current),
                                      requested=float(requested), retry_after=self._reset_in(budget))
        return Reservation(tenant_id, keys[1], int(estimated_tokens))

    async def settle(self, reservation: Reservation, tokens: int, cost_usd: float) -> None:
        """Swap the reserved estimate for the real token count and add the spend (0, 0 releases it)."""
        pipe = self.redis.pipeline(transaction=False)
        delta = int(tokens) - reservation.reserved_tokens
        if delta:
            pipe.incrby(reservation.tpm_key, delta)
        if cost_usd:
            spend_key = self._keys(reservation.tenant_id)[2]
            pipe.incrbyfloat(spend_key, float(cost_usd))
            pipe.expire(spend_key, 2 * 86400)
        await pipe.execute()

    async def usage(self, tenant_id: str) -> dict[str, float]:
        """Current counters and limits, for the stats endpoint."""
        rpm, tpm, usd = await self.redis.mget(list(self._keys(tenant_id)))
        limits = self.policy.limits_for(tenant_id)
        return {"rpm": int(rpm or 0), "tpm": int(tpm or 0), "daily_usd": float(usd or 0.0),
                "rpm_limit": limits.rpm, "tpm_limit": limits.tpm, "daily_usd_limit": limits.daily_usd}

    def _reset_in(self, budget: str) -> float:
        now = self.clock()
        return 86400 - now % 86400 if budget == "daily_usd" else 60 - now % 60


def _limit(value: float | None) -> float:
    return UNLIMITED if value is None or value < 0 else value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
