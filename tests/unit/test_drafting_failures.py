"""No pipeline waits forever: an agent's error (FailDrafting) and a stage timeout (ExpireStage) end drafting
with the reason, by the aggregate's rules; a failed draft can be revised."""
import datetime as dt

from services.core.messages import Message, new_envelope
from services.domain.events import replay
from tests.unit.test_pipeline_aggregate import PLAN, create_cmd, drive, proposal


def planned():
    cmd = create_cmd()
    h, _ = drive([], cmd)
    h, _ = drive(h, proposal(cmd.pipeline_id, "RecordPlan", **PLAN))
    return cmd.pipeline_id, h


def expire(pid, stage, timeout_s, at):
    name = "aietl.pipelines.v1.ExpireStage"
    env = new_envelope(name, tenant_id="acme", actor="agent:reflector", pipeline_id=pid, occurred_at=at)
    return Message(name, env, {"revision": 1, "stage": stage, "timeout_s": timeout_s})


def test_an_agent_error_fails_the_draft_with_its_reason_and_the_pipeline_can_be_revised():
    pid, h = planned()
    h, [ev] = drive(h, proposal(pid, "FailDrafting", revision=1, stage="planned",
                                reason="sql-expert failed on PlanProposed: KeyError: 'source'"))
    assert ev.short_name == "DraftingFailed" and ev.payload["stage"] == "planned"
    p = replay(h)
    assert p.status == "draft_failed" and "KeyError" in p.current["failure"]
    h, [rev] = drive(h, proposal(pid, "RevisePipeline", instructions="try again"))
    assert rev.short_name == "RevisionRequested"


def test_a_failure_about_a_stage_the_pipeline_has_left_is_rejected():
    pid, h = planned()
    _, [rejected] = drive(h, proposal(pid, "FailDrafting", revision=1, stage="schema_checked", reason="late"))
    assert rejected.short_name == "CommandRejected" and "moved on from schema_checked" in rejected.payload["reason"]


def test_a_stage_waiting_past_its_bound_expires_and_one_within_it_does_not():
    pid, h = planned()
    since = replay(h).modified_on
    _, [early] = drive(h, expire(pid, "planned", 60.0, since + dt.timedelta(seconds=10)))
    assert early.short_name == "CommandRejected" and "within its 60 s bound" in early.payload["reason"]
    h, [ev] = drive(h, expire(pid, "planned", 60.0, since + dt.timedelta(seconds=61)))
    assert ev.short_name == "DraftingFailed"
    assert "no answer from the sql-expert within 60 s" in ev.payload["reason"]
    _, [again] = drive(h, expire(pid, "draft_failed", 60.0, since + dt.timedelta(seconds=999)))
    assert again.short_name == "CommandRejected" and "nothing is being drafted" in again.payload["reason"]
