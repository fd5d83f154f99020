"""Cron slots in a timezone (DST included), the misfire policy, and the scheduler's decisions over a fold
of lifecycle events (no Kafka: events are fed to the fold as the Faust agent would)."""
import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.core.avro import build_codec
from services.core.eventlog import Record
from services.core.messages import Message, new_envelope
from services.scheduler.app import CronScheduler, slot_command
from services.scheduler.commands import cron_ids
from services.scheduler.feed import DeploymentFeed
from services.scheduler.slots import MISFIRE_GRACE, due_slot, next_slot, previous_slot, slot_iso

NY = "America/New_York"


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


# -- slots -----------------------------------------------------------------------------------------------
def test_slot_identity_is_the_utc_iso_string():
    moscow = datetime(2024, 5, 1, 2, 0, tzinfo=timezone(timedelta(hours=3)))
    assert slot_iso(moscow) == "2024-04-30T23:00:00+00:00"


def test_a_slot_at_now_is_due_and_the_previous_one_is_strictly_before():
    assert previous_slot("* * * * *", "UTC", utc(2024, 1, 1, 10, 1)) == utc(2024, 1, 1, 10, 1)
    assert previous_slot("* * * * *", "UTC", utc(2024, 1, 1, 10, 0, 59)) == utc(2024, 1, 1, 10, 0)
    assert next_slot("* * * * *", "UTC", utc(2024, 1, 1, 10, 1)) == utc(2024, 1, 1, 10, 2)


def test_cron_is_read_in_the_pipelines_timezone():
    # 02:00 in Moscow (UTC+3, no DST) is 23:00 UTC the day before.
    assert next_slot("0 2 * * *", "Europe/Moscow", utc(2024, 6, 1, 12)) == utc(2024, 6, 1, 23)
    # 02:00 in New York is 07:00 UTC in winter and 06:00 UTC in summer.
    assert next_slot("0 2 * * *", NY, utc(2024, 1, 15)) == utc(2024, 1, 15, 7)
    assert next_slot("0 2 * * *", NY, utc(2024, 7, 15)) == utc(2024, 7, 15, 6)


def test_a_local_time_skipped_by_spring_forward_fires_nothing():
    # 2024-03-10: New York jumps from 02:00 EST to 03:00 EDT; 02:30 does not exist that day.
    assert previous_slot("30 2 * * *", NY, utc(2024, 3, 10, 12)) == utc(2024, 3, 9, 7, 30)
    assert next_slot("30 2 * * *", NY, utc(2024, 3, 9, 8)) == utc(2024, 3, 11, 6, 30)
    # A minutely schedule goes straight from 01:59 EST to 03:00 EDT, one real minute later.
    assert next_slot("* * * * *", NY, utc(2024, 3, 10, 6, 59)) == utc(2024, 3, 10, 7, 0)
    assert previous_slot("* * * * *", NY, utc(2024, 3, 10, 7, 0, 30)) == utc(2024, 3, 10, 7, 0)


def test_a_local_time_repeated_by_fall_back_fires_once_at_its_first_occurrence():
    # 2024-11-03: New York goes from 01:59 EDT back to 01:00 EST; 01:30 happens at 05:30 and 06:30 UTC.
    first = utc(2024, 11, 3, 5, 30)
    assert next_slot("30 1 * * *", NY, utc(2024, 11, 3, 4)) == first
    assert next_slot("30 1 * * *", NY, first) == utc(2024, 11, 4, 6, 30)  # not 06:30 the same night
    assert previous_slot("30 1 * * *", NY, utc(2024, 11, 3, 6, 45)) == first
    # In the second pass through 01:xx a minutely schedule has no slots (documented), then resumes.
    assert previous_slot("* * * * *", NY, utc(2024, 11, 3, 6, 30, 30)) == utc(2024, 11, 3, 5, 59)
    assert next_slot("* * * * *", NY, utc(2024, 11, 3, 6, 30)) == utc(2024, 11, 3, 7, 0)


def test_an_expression_matching_no_date_has_no_slot():
    assert previous_slot("0 0 31 2 *", "UTC", utc(2024, 6, 1)) is None
    assert due_slot("0 0 31 2 *", "UTC", utc(2024, 6, 1)) is None


# -- misfire policy --------------------------------------------------------------------------------------------
def test_after_downtime_only_the_latest_missed_slot_is_due():
    # Slots 10:01 .. 10:07 were missed; only 10:07 runs.
    assert due_slot("* * * * *", "UTC", utc(2024, 1, 1, 10, 7, 30), utc(2024, 1, 1, 10, 0)) == utc(2024, 1, 1, 10, 7)


def test_slots_before_not_before_never_run():
    deployed = utc(2024, 1, 1, 10, 0, 30)
    assert due_slot("* * * * *", "UTC", utc(2024, 1, 1, 10, 0, 45), deployed) is None  # 10:00 precedes the deploy
    assert due_slot("* * * * *", "UTC", utc(2024, 1, 1, 10, 1, 5), deployed) == utc(2024, 1, 1, 10, 1)
    assert due_slot("* * * * *", "UTC", utc(2024, 1, 1, 10, 1), utc(2024, 1, 1, 10, 1)) == utc(2024, 1, 1, 10, 1)


def test_a_slot_later_than_the_grace_is_skipped():
    # A daily job always gets its latest slot (it is less than a day old) ...
    assert due_slot("0 2 * * *", "UTC", utc(2024, 1, 2, 1, 59), utc(2023, 1, 1)) == utc(2024, 1, 1, 2)
    # ... a weekly one whose slot was missed by three days waits for the next week.
    monday = "0 2 * * 1"
    assert due_slot(monday, "UTC", utc(2024, 1, 1, 2) + MISFIRE_GRACE, utc(2023, 1, 1)) == utc(2024, 1, 1, 2)
    assert due_slot(monday, "UTC", utc(2024, 1, 4, 2), utc(2023, 1, 1)) is None


# -- the scheduler over a fold of lifecycle events ---------------------------------------------------------------
CODEC = build_codec()


def ids(name: str) -> str:
    """A pipeline id for a short test name ("p1")."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


class NoReader:
    def read(self, positions):
        return iter(())

    def close(self):
        pass


class Log:
    """Events appended to one partition of a pretend pipelines.events.v1, folded as the agent would."""

    def __init__(self, feed: DeploymentFeed):
        self.feed = feed
        self.offset = 0
        self.versions: dict[str, int] = {}

    def append(self, short: str, pid: str, at: datetime, **payload) -> None:
        if pid not in self.versions:  # a pipeline's history starts with its request, as on the real log
            self.versions[pid] = 0
            self.append("PipelineRequested", pid, at, description="d", name=None, labels={})
        self.versions[pid] += 1
        name = f"aietl.pipelines.v1.{short}"
        env = new_envelope(name, tenant_id="t1", actor="user:test", pipeline_id=ids(pid), occurred_at=at,
                           aggregate_version=self.versions[pid])
        value = CODEC.encode(name, Message(name, env, payload).to_record())
        assert self.feed.observe(Record("pipelines.events.v1", 0, self.offset, None, value, []))
        self.offset += 1

    def deploy(self, pid: str, at: datetime, cron: str = "* * * * *", tz: str = "UTC") -> None:
        spec = {"schedule": {"cron": cron, "timezone": tz}, "trigger": {"kind": "cron"}}
        artifacts = json.dumps({"draft_version": 1, "spec_json": json.dumps(spec)})
        self.append("PipelineDeployed", pid, at, version=1, previous_version=None, artifacts_json=artifacts)


@pytest.fixture
def world():
    feed = DeploymentFeed(NoReader(), CODEC)
    sent: list[Message] = []

    async def send(msg):
        sent.append(msg)

    return Log(feed), CronScheduler(feed, send), sent


def fire(scheduler, at) -> int:
    return asyncio.run(scheduler.fire_due(at))


def test_each_slot_is_sent_once_with_deterministic_ids(world):
    log, scheduler, sent = world
    log.deploy("p1", utc(2024, 1, 1, 10, 0, 30))
    for second in range(0, 60, 7):
        fire(scheduler, utc(2024, 1, 1, 10, 1, second))
    assert len(sent) == 1
    cmd = sent[0]
    slot = "2024-01-01T10:01:00+00:00"
    assert (cmd.payload["run_id"], cmd.message_id) == cron_ids(ids("p1"), slot)
    assert cmd.payload["slot"] == slot and cmd.payload["trigger_kind"] == "cron"
    assert json.loads(cmd.payload["params_json"]) == {"slot": slot, "logical_date": slot}
    assert cmd.envelope["tenant_id"] == "t1" and cmd.envelope["actor"] == "trigger:cron"
    fire(scheduler, utc(2024, 1, 1, 10, 2, 1))
    assert [m.payload["slot"] for m in sent] == [slot, "2024-01-01T10:02:00+00:00"]


def test_another_instance_makes_the_same_command(world):
    log, scheduler, sent = world
    log.deploy("p1", utc(2024, 1, 1, 10, 0, 30))
    other = CronScheduler(log.feed, scheduler._send)
    fire(scheduler, utc(2024, 1, 1, 10, 1, 1))
    fire(other, utc(2024, 1, 1, 10, 1, 2))
    assert len(sent) == 2 and sent[0].message_id == sent[1].message_id
    assert sent[0].payload["run_id"] == sent[1].payload["run_id"]


def test_a_restarted_instance_does_not_resend_a_slot_on_the_log(world):
    log, scheduler, sent = world
    log.deploy("p1", utc(2024, 1, 1, 10, 0, 30))
    slot = "2024-01-01T10:01:00+00:00"
    log.append("RunRequested", "p1", utc(2024, 1, 1, 10, 1, 1), run_id=cron_ids(ids("p1"), slot)[0], version=1,
               trigger_kind="cron", params_json="{}", slot=slot)
    fire(CronScheduler(log.feed, scheduler._send), utc(2024, 1, 1, 10, 1, 20))
    assert sent == []


def test_no_slot_during_a_pause_and_none_of_the_missed_ones_after_resume(world):
    log, scheduler, sent = world
    log.deploy("p1", utc(2024, 1, 1, 10, 0, 30))
    log.append("PipelinePaused", "p1", utc(2024, 1, 1, 10, 0, 40))
    fire(scheduler, utc(2024, 1, 1, 10, 1, 1))
    fire(scheduler, utc(2024, 1, 1, 10, 2, 1))
    log.append("PipelineResumed", "p1", utc(2024, 1, 1, 10, 2, 30))
    fire(scheduler, utc(2024, 1, 1, 10, 2, 31))  # 10:02 was missed while paused: it never runs
    assert sent == []
    fire(scheduler, utc(2024, 1, 1, 10, 3, 0))
    assert [m.payload["slot"] for m in sent] == ["2024-01-01T10:03:00+00:00"]


def test_a_deleted_pipeline_is_not_scheduled(world):
    log, scheduler, sent = world
    log.deploy("p1", utc(2024, 1, 1, 10, 0, 30))
    log.append("PipelineDeleted", "p1", utc(2024, 1, 1, 10, 0, 50))
    fire(scheduler, utc(2024, 1, 1, 10, 1, 1))
    assert sent == []


def test_logical_date_is_the_slot_in_the_pipelines_timezone(world):
    log, scheduler, sent = world
    log.deploy("p1", utc(2024, 1, 1), cron="0 2 * * *", tz="Europe/Moscow")
    fire(scheduler, utc(2024, 1, 1, 23, 0, 1))
    params = json.loads(sent[0].payload["params_json"])
    assert params == {"slot": "2024-01-01T23:00:00+00:00", "logical_date": "2024-01-02T02:00:00+03:00"}
    assert slot_command(log.feed.active()[0], utc(2024, 1, 1, 23)).message_id == sent[0].message_id


def test_a_gap_in_live_events_is_left_to_the_catch_up(world):
    log, _, _ = world
    log.deploy("p1", utc(2024, 1, 1))
    assert not log.feed.observe(Record("pipelines.events.v1", 0, 5, None, b"not even decoded", []))  # 1-4 unseen
    assert not log.feed.observe(Record("pipelines.events.v1", 0, 0, None, b"already folded", []))
