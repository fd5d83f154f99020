"""The scheduler on the real stack: two instances request each minute slot once, a restarted instance
does not request a slot again, and a paused pipeline gets no run for the slots of its pause.

Slow by nature: it waits for real minute boundaries (three of them, at most ~3.5 minutes in all).
"""
import os
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from services.processes import group_assignments, running, spawn
from services.scheduler.commands import cron_ids
from services.scheduler.slots import next_slot, parse_instant, slot_iso
from tests.harness import wait_for
from tests.pipelines import draft_and_deploy, drafting_deployment, events, send_command, wait_event

pytestmark = pytest.mark.integration
SECOND = "scheduler-b"  # pid/log file name of the second scheduler process
CRON = "* * * * *"
SLOT_WAIT_S = 100       # a minute boundary plus generous margin on a busy machine


def scheduler_members(dep) -> int:
    try:
        return len(group_assignments(dep.settings, "scheduler") or {})
    except Exception:  # the group is rebalancing or not known yet
        return 0


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "sched", ("scheduler",)) as d:
        spawn(d.settings, SECOND, ["worker", "scheduler"])
        wait_for(lambda: scheduler_members(d) == 2, timeout=90, interval=0.5, what="two scheduler members")
        yield d


@pytest.fixture(scope="module")
def minutely(dep):
    """A deployed pipeline that runs every minute: (pipeline id, deploy time)."""
    u = uuid.uuid4().hex[:8]
    pid, spec = draft_and_deploy(dep, "Load orders from the PostgreSQL table shop.orders into the ClickHouse "
                                      f"table analytics.sched_{u} every minute")
    assert spec["schedule"] == {"cron": CRON, "timezone": "UTC"} and spec["trigger"]["kind"] == "cron"
    deployed = next(e for e in events(dep, pid) if e["type"] == "PipelineDeployed")
    return pid, parse_instant(deployed["envelope"]["occurred_at"])


def cron_runs(dep, pid) -> Counter:
    return Counter(e["payload"]["slot"] for e in events(dep, pid)
                   if e["type"] == "RunRequested" and e["payload"]["trigger_kind"] == "cron")


def sleep_until(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(timezone.utc)).total_seconds()))


def clear_of_a_boundary(seconds: float = 5.0) -> None:
    """Wait until the next slot is at least ``seconds`` away, so a lifecycle change cannot race a slot."""
    now = datetime.now(timezone.utc)
    upcoming = next_slot(CRON, "UTC", now)
    if upcoming - now < timedelta(seconds=seconds):
        sleep_until(upcoming + timedelta(seconds=2))


def event_caused_by(dep, pid, command_id):
    return wait_for(lambda: next((e for e in events(dep, pid) if e["envelope"].get("causation_id") == command_id),
                                 None), timeout=30, what=f"the outcome of command {command_id}")


def test_two_schedulers_request_each_slot_once_also_after_a_restart(dep, minutely):
    pid, deployed_at = minutely
    first = slot_iso(next_slot(CRON, "UTC", deployed_at))
    ev = wait_event(dep, pid, "RunRequested", timeout=SLOT_WAIT_S, slot=first)
    assert ev["payload"]["trigger_kind"] == "cron"
    assert ev["payload"]["run_id"] == cron_ids(pid, first)[0]
    assert ev["envelope"]["actor"] == "trigger:cron"
    sleep_until(parse_instant(first) + timedelta(seconds=5))  # both instances have ticked past the slot
    assert cron_runs(dep, pid)[first] == 1

    # A third sender of the same slot (another instance, a retry): same command id -> skipped silently;
    # the same run id under a new command id -> rejected. Still one run.
    run_id, command_id = cron_ids(pid, first)
    payload = {"run_id": run_id, "trigger_kind": "cron", "params_json": "{}", "slot": first}
    send_command(dep, "TriggerScheduledRun", pid, payload, message_id=command_id)
    wait_for(lambda: f"skipped duplicate command {command_id}" in dep.log("pipeline-aggregate"), timeout=30,
             what="the aggregate to skip the repeated slot command")
    rejected = event_caused_by(dep, pid, send_command(dep, "TriggerScheduledRun", pid, payload))
    assert rejected["type"] == "CommandRejected" and "already requested" in rejected["payload"]["reason"]
    assert cron_runs(dep, pid)[first] == 1

    # Kill one instance outright and start it again: it folds the log and does not ask for `first` again.
    victim = running(dep.settings)["scheduler"]
    os.killpg(victim, signal.SIGKILL)
    wait_for(lambda: running(dep.settings).get("scheduler") is None, timeout=30, what="the scheduler to die")
    dep.start_worker("scheduler")
    wait_for(lambda: dep.log("scheduler").count("scheduler caught up") == 2, timeout=60,
             what="the restarted scheduler to fold the log")
    time.sleep(5)  # several ticks of the restarted instance
    runs = cron_runs(dep, pid)
    assert runs[first] == 1
    assert set(runs.values()) == {1}, runs  # and every slot since (if a minute passed) once too


def test_a_paused_pipeline_gets_no_run_for_the_slots_of_its_pause(dep, minutely):
    pid, _ = minutely
    clear_of_a_boundary()
    paused = event_caused_by(dep, pid, send_command(dep, "PausePipeline", pid, {}))
    assert paused["type"] == "PipelinePaused"
    paused_at = parse_instant(paused["envelope"]["occurred_at"])
    missed = next_slot(CRON, "UTC", paused_at)
    sleep_until(missed + timedelta(seconds=5))  # a slot passes while paused
    clear_of_a_boundary()
    resumed = event_caused_by(dep, pid, send_command(dep, "ResumePipeline", pid, {}))
    assert resumed["type"] == "PipelineResumed"
    resumed_at = parse_instant(resumed["envelope"]["occurred_at"])
    after = slot_iso(next_slot(CRON, "UTC", resumed_at))
    wait_event(dep, pid, "RunRequested", timeout=SLOT_WAIT_S, slot=after)
    time.sleep(3)

    runs = cron_runs(dep, pid)
    assert slot_iso(missed) not in runs  # not during the pause, and not caught up after the resume
    assert not [s for s in runs if paused_at <= parse_instant(s) < resumed_at], runs
    assert runs[after] == 1 and set(runs.values()) == {1}, runs
    # The schedulers did not even ask: nothing was rejected for a cron slot while paused.
    rejected = [e for e in events(dep, pid) if e["type"] == "CommandRejected"
                and e["payload"]["command_type"].endswith("TriggerScheduledRun")
                and paused_at <= parse_instant(e["envelope"]["occurred_at"]) < resumed_at]
    assert not rejected, rejected
