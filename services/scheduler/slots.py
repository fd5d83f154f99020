"""Cron slots: which instants a pipeline's schedule names, in the pipeline's timezone. Pure functions.

A *slot* is one UTC instant named by the cron expression, read as local wall-clock time in the schedule's
timezone. Its identity (in run ids, command ids and ``RunRequested.slot``) is :func:`slot_iso`, the UTC
ISO-8601 string, so it is the same whatever the scheduler host's timezone or which instance computes it.

Daylight-saving time (croniter iterates naive local wall times; zoneinfo maps them to instants):

* A wall time that does not exist (the hour skipped when clocks go forward) is no slot: nothing fires
  for it, and nothing fires "instead" later.
* A wall time that exists twice (the hour repeated when clocks go back) is one slot: its *first*
  occurrence (``fold=0``, still on summer time). A daily 01:30 job therefore runs once on that night, not
  twice; the price is that a sub-hourly schedule has no slots in the second pass through the repeated
  hour. Use ``timezone: UTC`` for high-frequency schedules that must not pause.

Misfire policy (:func:`due_slot`), like Airflow with ``catchup=False``:

* Only the most recent slot at or before "now" is ever due: after downtime the latest missed slot runs
  once and older missed slots are skipped.
* Slots before ``not_before`` never run. The scheduler passes the later of the deploy time and the last
  resume time, so slots from before a deployment or during a pause are never run.
* A slot more than :data:`MISFIRE_GRACE` (24 h) late is skipped as well. The latest slot is always less
  than one period old, so this only bites schedules slower than daily: a weekly or monthly job whose slot
  was missed by more than a day waits for its next slot instead of running days late with a stale
  logical date, while a daily or faster job always gets its latest slot.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional
from zoneinfo import ZoneInfo

MISFIRE_GRACE = timedelta(hours=24)
# Local wall time can run ahead of the instant's own wall time by at most the DST shift (1 h almost
# everywhere, 2 h in a few historical zones); 3 h bounds the search in the repeated hour.
_MAX_DST_SHIFT = timedelta(hours=3)
# Croniter steps allowed per search: enough to cross a DST gap or repeated hour on a minutely schedule.
_MAX_STEPS = 2000


def slot_iso(slot: datetime) -> str:
    """The slot's identity: its UTC instant as ISO-8601, e.g. ``2024-03-10T07:00:00+00:00``."""
    return slot.astimezone(timezone.utc).isoformat()


def parse_instant(value) -> Optional[datetime]:
    """An aware UTC datetime from an ISO string or datetime (naive values are taken as UTC)."""
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _first_instant(naive: datetime, zone: ZoneInfo) -> Optional[datetime]:
    """The first UTC instant whose wall time in ``zone`` is ``naive``; None when that wall time is skipped."""
    instant = naive.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:
        return None  # inside a spring-forward gap: zoneinfo shifted it to a wall time that does exist
    return instant


def _iterator(cron: str, start: datetime):
    from croniter import croniter  # local: importing this module stays cheap

    return croniter(cron, start)


def previous_slot(cron: str, tz: str, at_utc: datetime) -> Optional[datetime]:
    """The latest slot at or before ``at_utc`` (None if the expression matches no date in reach)."""
    from croniter import CroniterBadDateError

    zone = ZoneInfo(tz)
    local = at_utc.astimezone(zone)
    # croniter's get_prev is strictly before its start; the microsecond makes "at" itself a candidate.
    start = local.replace(tzinfo=None) + timedelta(microseconds=1)
    if local.fold:
        # Second pass through a repeated hour: later wall times of that hour already happened (first pass).
        start += _MAX_DST_SHIFT
    it = _iterator(cron, start)
    try:
        for _ in range(_MAX_STEPS):
            instant = _first_instant(it.get_prev(datetime), zone)
            if instant is not None and instant <= at_utc:
                return instant
    except CroniterBadDateError:
        return None
    return None


def next_slot(cron: str, tz: str, after_utc: datetime) -> Optional[datetime]:
    """The first slot strictly after ``after_utc`` (None if the expression matches no date in reach)."""
    from croniter import CroniterBadDateError

    zone = ZoneInfo(tz)
    it = _iterator(cron, after_utc.astimezone(zone).replace(tzinfo=None))
    try:
        for _ in range(_MAX_STEPS):
            instant = _first_instant(it.get_next(datetime), zone)
            # In the second pass through a repeated hour, the next wall times map to instants already past.
            if instant is not None and instant > after_utc:
                return instant
    except CroniterBadDateError:
        return None
    return None


def due_slot(cron: str, tz: str, now_utc: datetime, not_before_utc: Optional[datetime] = None,
             grace: timedelta = MISFIRE_GRACE) -> Optional[datetime]:
    """The slot to run now under the misfire policy (module docstring), or None.

    Callers remember which slots they already fired; this function only says which one is due.
    """
    slot = previous_slot(cron, tz, now_utc)
    if slot is None:
        return None
    if not_before_utc is not None and slot < not_before_utc:
        return None  # before the deployment, or missed during a pause
    if now_utc - slot > grace:
        return None  # too late to be useful: wait for the next slot
    return slot
