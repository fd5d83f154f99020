"""Reading the audit trail back from ClickHouse ``audit_log`` (filled by the metrics-sink from ``audit.v1``).

Always for one tenant: the caller passes the principal's tenant, never a tenant from the request.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Optional

from services.core.platform_clickhouse import LockedClient
from services.core.settings import Settings

COLUMNS = ("ts", "event_id", "actor", "action", "outcome", "resource_id", "pipeline_id", "reason",
           "source_address", "request_id", "recorder", "correlation_id", "causation_id")
FILTERS = ("actor", "action", "outcome", "pipeline_id", "request_id")
MAX_LIMIT = 1000
DATETIME_MAX = 2**32 - 1


class AuditStore:
    def __init__(self, settings: Settings, connect: Optional[Callable[[], object]] = None):
        self.database = settings.clickhouse_database
        self._ch = LockedClient(settings, connect)

    def query(self, tenant_id: str, *, since: Optional[datetime] = None, until: Optional[datetime] = None,
              limit: int = 100, **filters: Optional[str]) -> list[dict]:
        where, params = ["tenant_id = %(tenant)s"], {"tenant": tenant_id}
        for name in FILTERS:
            if filters.get(name):
                where.append(f"{name} = %({name})s")
                params[name] = filters[name]
        # As epoch seconds clamped to DateTime's range (1970..2106): ClickHouse cannot parse a year-1 text,
        # and a bound outside the range means the same as its edge.
        if since is not None:
            where.append("ts >= toDateTime(%(since)s)")
            params["since"] = _epoch(since)
        if until is not None:
            where.append("ts < toDateTime(%(until)s)")
            params["until"] = _epoch(until)
        params["limit"] = max(1, min(int(limit), MAX_LIMIT))
        # LIMIT 1 BY event_id: the sink is at-least-once, a record stored twice is shown once.
        sql = (f"SELECT {', '.join(COLUMNS)} FROM {self.database}.audit_log WHERE {' AND '.join(where)} "
               f"ORDER BY ts DESC, event_id LIMIT 1 BY event_id LIMIT %(limit)s")
        out = []
        for row in self._ch.execute(sql, params):
            item = dict(zip(COLUMNS, row))
            item["ts"] = item["ts"].isoformat() + "Z" if item["ts"].tzinfo is None else item["ts"].isoformat()
            item["subject"] = item.pop("resource_id")
            out.append(item)
        return out


def _epoch(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        seconds = int(value.timestamp())
    except (OverflowError, OSError, ValueError):
        seconds = 0 if value.year < 1970 else DATETIME_MAX
    return max(0, min(seconds, DATETIME_MAX))
