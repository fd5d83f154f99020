"""The Pipeline aggregate and its command handlers, without Kafka."""
import uuid

from services.core.messages import Message, new_envelope
from services.domain.commands import apply_command
from services.domain.events import replay


def create_cmd(pid=None, description="copy orders to ClickHouse", **extra):
    pid = pid or str(uuid.uuid4())
    name = "aietl.pipelines.v1.CreatePipeline"
    env = new_envelope(name, tenant_id="acme", actor="user:test", pipeline_id=pid)
    return Message(name, env, {"description": description, "name": None, "labels": {}, **extra})


def test_create_pipeline_appends_pipeline_requested_at_version_1():
    cmd = create_cmd()
    [event] = apply_command([], cmd)
    assert event.short_name == "PipelineRequested"
    assert event.envelope["aggregate_version"] == 1
    assert event.envelope["causation_id"] == cmd.message_id
    assert event.envelope["correlation_id"] == cmd.envelope["correlation_id"]
    assert event.pipeline_id == cmd.pipeline_id and event.envelope["tenant_id"] == "acme"
    assert event.payload == {"description": "copy orders to ClickHouse", "name": None, "labels": {}}


def test_replaying_the_log_rebuilds_the_aggregate_through_its_mutators():
    cmd = create_cmd()
    events = apply_command([], cmd)
    pipeline = replay(events)
    assert str(pipeline.id) == cmd.pipeline_id
    assert (pipeline.version, pipeline.status, pipeline.tenant_id) == (1, "requested", "acme")
    assert pipeline.command_ids == {cmd.message_id}


def test_creating_an_existing_pipeline_is_rejected_and_changes_nothing():
    first = create_cmd()
    history = apply_command([], first)
    [rejected] = apply_command(history, create_cmd(pid=first.pipeline_id))
    assert rejected.short_name == "CommandRejected"
    assert rejected.payload["error_code"] == "pipeline_exists"
    assert rejected.envelope["aggregate_version"] is None
    assert replay(history + [rejected]).version == 1


def test_blank_description_is_rejected_by_the_aggregate_rule():
    [rejected] = apply_command([], create_cmd(description="   "))
    assert rejected.payload["error_code"] == "invalid_description"
    assert "must not be empty" in rejected.payload["reason"]


def test_unknown_command_type_is_rejected():
    cmd = create_cmd()
    cmd.name = "aietl.pipelines.v1.LaunchRocket"
    [rejected] = apply_command([], cmd)
    assert rejected.payload["error_code"] == "unknown_command"


def proposal(pid, short, **payload):
    name = f"aietl.pipelines.v1.{short}"
    return Message(name, new_envelope(name, tenant_id="acme", actor="service:test", pipeline_id=pid), payload)


def drive(history, cmd):
    events = apply_command(history, cmd)
    return history + events, events


PLAN = dict(revision=1, spec_json="{}", understood=["copy"], confidence=1.0, recalled_ids=[], llm=None)
SQL = dict(revision=1, extract_sql="SELECT 1", transform_sql=None, target_ddl=None, source_dialect="postgres",
           target_dialect="clickhouse", llm=None)
SCHEMA = dict(revision=1, source_columns_json="[]", target_columns_json="[]", pii_json="[]", issues=[],
              sample_rows_json="[]")


def qa(passed):
    return dict(revision=1, passed=passed, checks_json="[]", findings=[] if passed else ["bad"],
                dry_run_rows_in=1, dry_run_rows_out=1)


def test_the_agent_chain_moves_a_revision_to_a_numbered_draft():
    cmd = create_cmd()
    pid = cmd.pipeline_id
    h, _ = drive([], cmd)
    for short, payload, expected in [("RecordPlan", PLAN, "PlanProposed"), ("RecordSql", SQL, "SqlProposed"),
                                     ("RecordSchemaCheck", SCHEMA, "SchemaChecked"),
                                     ("RecordQaResult", qa(True), "QaPassed"),
                                     ("CompleteDraft", dict(revision=1, quality_score=0.9, checks_passed=["parse"],
                                                            passed_qa=True), "DraftCompleted")]:
        h, [ev] = drive(h, proposal(pid, short, **payload))
        assert ev.short_name == expected, ev.payload
    p = replay(h)
    assert p.status == "draft_ready" and p.version == 6
    assert p.drafts[0]["draft_version"] == 1 and p.drafts[0]["extract_sql"] == "SELECT 1"
    assert h[-1].payload["draft_version"] == 1


def test_a_proposal_from_an_older_revision_is_rejected_as_stale():
    cmd = create_cmd()
    pid = cmd.pipeline_id
    h, _ = drive([], cmd)
    h, _ = drive(h, proposal(pid, "RecordClarification", revision=1, question="which table?", missing=["source"],
                             llm=None))
    h, [rev] = drive(h, proposal(pid, "RevisePipeline", instructions="the table is shop.orders"))
    assert rev.short_name == "RevisionRequested" and rev.payload["revision"] == 2
    _, [rejected] = drive(h, proposal(pid, "RecordPlan", **PLAN))
    assert rejected.payload["error_code"] == "stale_proposal"
    assert "revision 1 is stale" in rejected.payload["reason"]
    _, [ok] = drive(h, proposal(pid, "RecordPlan", **{**PLAN, "revision": 2}))
    assert ok.short_name == "PlanProposed"


def test_sql_before_a_plan_is_rejected_and_repairs_are_bounded():
    cmd = create_cmd()
    pid = cmd.pipeline_id
    h, _ = drive([], cmd)
    _, [early] = drive(h, proposal(pid, "RecordSql", **SQL))
    assert early.payload["error_code"] == "wrong_stage"
    h, _ = drive(h, proposal(pid, "RecordPlan", **PLAN))
    for rnd in (1, 2, 3):
        h, _ = drive(h, proposal(pid, "RecordSql", **SQL))
        h, _ = drive(h, proposal(pid, "RecordSchemaCheck", **SCHEMA))
        h, [failed] = drive(h, proposal(pid, "RecordQaResult", **qa(False)))
        assert failed.short_name == "QaFailed"
        h, [refl] = drive(h, proposal(pid, "RecordReflection", revision=1, round=rnd, instructions=["fix"], llm=None))
        assert refl.short_name == "ReflectionIssued"
    h, _ = drive(h, proposal(pid, "RecordSql", **SQL))
    h, _ = drive(h, proposal(pid, "RecordSchemaCheck", **SCHEMA))
    h, _ = drive(h, proposal(pid, "RecordQaResult", **qa(False)))
    _, [limit] = drive(h, proposal(pid, "RecordReflection", revision=1, round=4, instructions=["x"], llm=None))
    assert limit.payload["error_code"] == "repair_limit"
    h, [draft] = drive(h, proposal(pid, "CompleteDraft", revision=1, quality_score=0.2, checks_passed=[],
                                   passed_qa=False))
    assert replay(h).status == "draft_failed"


def test_proposal_for_an_unknown_pipeline_is_rejected():
    [rejected] = apply_command([], proposal(str(uuid.uuid4()), "RecordPlan", **PLAN))
    assert rejected.payload["error_code"] == "pipeline_not_found"


def ready_pipeline(passed=True):
    cmd = create_cmd()
    pid = cmd.pipeline_id
    h, _ = drive([], cmd)
    for short, payload in [("RecordPlan", PLAN), ("RecordSql", SQL), ("RecordSchemaCheck", SCHEMA),
                           ("RecordQaResult", qa(passed)),
                           ("CompleteDraft", dict(revision=1, quality_score=0.9, checks_passed=[], passed_qa=passed))]:
        h, _ = drive(h, proposal(pid, short, **payload))
    return pid, h


def test_deploy_needs_a_qa_passed_version_and_carries_its_artifacts():
    pid, h = ready_pipeline(passed=False)
    _, [rejected] = drive(h, proposal(pid, "DeployPipeline", version=None))
    assert rejected.payload["error_code"] == "not_deployable" and "did not pass QA" in rejected.payload["reason"]
    pid, h = ready_pipeline()
    _, [missing] = drive(h, proposal(pid, "DeployPipeline", version=7))
    assert "no draft version 7" in missing.payload["reason"]
    h, [deployed] = drive(h, proposal(pid, "DeployPipeline", version=None))
    assert deployed.short_name == "PipelineDeployed" and deployed.payload["version"] == 1
    assert '"extract_sql": "SELECT 1"' in deployed.payload["artifacts_json"]
    assert replay(h).lifecycle == "deployed"


def test_runs_only_when_deployed_and_not_paused_and_nothing_after_delete():
    pid, h = ready_pipeline()
    run = lambda rid: proposal(pid, "TriggerRun", run_id=rid, trigger_kind="manual", params_json="{}", slot=None)  # noqa: E731
    _, [early] = drive(h, run("r0"))
    assert early.payload["error_code"] == "wrong_lifecycle"
    h, _ = drive(h, proposal(pid, "DeployPipeline", version=1))
    h, [requested] = drive(h, run("r1"))
    assert requested.short_name == "RunRequested" and requested.payload["version"] == 1
    _, [dup] = drive(h, run("r1"))
    assert "already requested" in dup.payload["reason"]
    h, [paused] = drive(h, proposal(pid, "PausePipeline"))
    _, [blocked] = drive(h, run("r2"))
    assert paused.short_name == "PipelinePaused" and blocked.payload["error_code"] == "wrong_lifecycle"
    h, _ = drive(h, proposal(pid, "ResumePipeline"))
    h, [ok] = drive(h, run("r2"))
    assert ok.short_name == "RunRequested"
    h, [deleted] = drive(h, proposal(pid, "DeletePipeline"))
    _, [gone] = drive(h, run("r3"))
    assert deleted.short_name == "PipelineDeleted" and gone.payload["error_code"] == "pipeline_deleted"


def test_scheduled_and_message_runs_follow_the_same_rules_and_share_the_run_id_space():
    pid, h = ready_pipeline()
    h, _ = drive(h, proposal(pid, "DeployPipeline", version=1))
    slot = "2026-11-24T02:00:00+00:00"
    h, [cron] = drive(h, proposal(pid, "TriggerScheduledRun", run_id="c1", trigger_kind="cron", params_json="{}",
                                  slot=slot))
    assert cron.short_name == "RunRequested" and cron.payload["slot"] == slot and cron.payload["trigger_kind"] == "cron"
    h, [msg] = drive(h, proposal(pid, "TriggerRunFromMessage", run_id="k1", trigger_kind="kafka",
                                 params_json='{"status": "paid"}', slot=None))
    assert msg.short_name == "RunRequested" and msg.payload["params_json"] == '{"status": "paid"}'
    _, [dup] = drive(h, proposal(pid, "TriggerRun", run_id="c1", trigger_kind="manual", params_json="{}", slot=None))
    assert "already requested" in dup.payload["reason"]
    h, _ = drive(h, proposal(pid, "PausePipeline"))
    _, [blocked] = drive(h, proposal(pid, "TriggerScheduledRun", run_id="c2", trigger_kind="cron", params_json="{}",
                                     slot=slot))
    assert blocked.payload["error_code"] == "wrong_lifecycle"


def test_cancelling_needs_a_requested_run_and_happens_once():
    pid, h = ready_pipeline()
    h, _ = drive(h, proposal(pid, "DeployPipeline", version=1))
    _, [unknown] = drive(h, proposal(pid, "CancelRun", run_id="nope", reason="x"))
    assert unknown.payload["error_code"] == "run_not_found"
    h, _ = drive(h, proposal(pid, "TriggerRun", run_id="r1", trigger_kind="manual", params_json="{}", slot=None))
    h, [asked] = drive(h, proposal(pid, "CancelRun", run_id="r1", reason="not needed"))
    assert asked.short_name == "RunCancelRequested" and asked.payload["reason"] == "not needed"
    _, [again] = drive(h, proposal(pid, "CancelRun", run_id="r1", reason="still not"))
    assert "already asked to stop" in again.payload["reason"]


def test_cancelling_a_run_the_runs_log_shows_ended_is_refused_and_changes_nothing():
    pid, h = ready_pipeline()
    h, _ = drive(h, proposal(pid, "DeployPipeline", version=1))
    h, _ = drive(h, proposal(pid, "TriggerRun", run_id="r1", trigger_kind="manual", params_json="{}", slot=None))
    ended = {"r1": "succeeded"}
    [refused] = apply_command(h, proposal(pid, "CancelRun", run_id="r1", reason="late"), ended.get)
    assert refused.short_name == "CommandRejected" and refused.payload["error_code"] == "run_finished"
    assert "already succeeded" in refused.payload["reason"]
    [asked] = apply_command(h, proposal(pid, "CancelRun", run_id="r1", reason="in time"), {}.get)
    assert asked.short_name == "RunCancelRequested"


def test_rollback_to_an_earlier_deployed_version():
    pid, h = ready_pipeline()
    h, _ = drive(h, proposal(pid, "DeployPipeline", version=1))
    h, _ = drive(h, proposal(pid, "RevisePipeline", instructions="only paid orders"))
    for short, payload in [("RecordPlan", {**PLAN, "revision": 2}), ("RecordSql", {**SQL, "revision": 2}),
                           ("RecordSchemaCheck", {**SCHEMA, "revision": 2}),
                           ("RecordQaResult", {**qa(True), "revision": 2}),
                           ("CompleteDraft", dict(revision=2, quality_score=0.9, checks_passed=[], passed_qa=True))]:
        h, _ = drive(h, proposal(pid, short, **payload))
    _, [never] = drive(h, proposal(pid, "RollbackPipeline", version=2))
    assert never.payload["error_code"] == "not_deployable"
    h, _ = drive(h, proposal(pid, "DeployPipeline", version=2))
    h, [back] = drive(h, proposal(pid, "RollbackPipeline", version=1))
    assert back.short_name == "PipelineRolledBack" and back.payload["from_version"] == 2
    assert replay(h).deployed_version == 1


def test_a_command_for_another_tenants_pipeline_is_rejected_and_changes_nothing():
    history = apply_command([], create_cmd())
    pid = history[0].pipeline_id
    for cmd in (create_cmd(pid=pid), proposal(pid, "PausePipeline"), proposal(pid, "TriggerRun")):
        cmd.envelope["tenant_id"] = "mallory"
        [rejected] = apply_command(history, cmd)
        assert rejected.short_name == "CommandRejected"
        assert (rejected.payload["error_code"], rejected.payload["command_type"]) == ("tenant_mismatch", cmd.name)
        assert "does not belong to tenant 'mallory'" in rejected.payload["reason"]
        assert replay(history + [rejected]).version == 1
