"""The audit record builders (services/audit) and the sink's row for them: pure."""
import pytest

from services.audit import audit_record, command_audit
from services.core.messages import Message, new_envelope
from services.metrics_sink.rows import COLUMNS, row_for


def _command(name="DeployPipeline"):
    return Message(f"aietl.pipelines.v1.{name}",
                   new_envelope(f"aietl.pipelines.v1.{name}", tenant_id="acme", actor="key:ab12", pipeline_id="p1"), {})


def test_a_rejected_command_is_audited_with_the_aggregates_reason_and_the_gateways_headers():
    cmd = _command()
    rejected = Message("aietl.pipelines.v1.CommandRejected", new_envelope(
        "aietl.pipelines.v1.CommandRejected", tenant_id="acme", actor="pipeline-aggregate", pipeline_id="p1"),
        {"command_id": cmd.message_id, "command_type": "DeployPipeline", "error_code": "not_deployable",
         "reason": "no QA-passed version"})
    rec = command_audit(cmd, [rejected], headers={"source_address": "10.1.2.3", "request_id": "r-9"})
    assert (rec.payload["outcome"], rec.payload["action"]) == ("rejected", "DeployPipeline")
    assert rec.payload["reason"] == "not_deployable: no QA-passed version"
    assert (rec.payload["source_address"], rec.payload["request_id"]) == ("10.1.2.3", "r-9")
    assert (rec.envelope["tenant_id"], rec.envelope["actor"], rec.envelope["causation_id"]) == (
        "acme", "key:ab12", cmd.message_id)


def test_the_record_of_a_command_has_a_stable_id_so_a_rewrite_is_the_same_record():
    cmd = _command("CreatePipeline")
    assert command_audit(cmd, []).message_id == command_audit(cmd, []).message_id
    assert command_audit(cmd, []).payload["outcome"] == "accepted"
    assert command_audit(cmd, []).message_id != command_audit(_command("CreatePipeline"), []).message_id


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError):
        audit_record(tenant_id="t", actor="a", action="x", outcome="maybe", recorder="gateway")


def test_the_sink_stores_every_audit_column():
    rec = audit_record(tenant_id="acme", actor="key:ab12", action="connections.delete", outcome="accepted",
                       recorder="gateway", subject="warehouse-pg", source_address="10.0.0.1", request_id="r1")
    table, row = row_for(rec)
    assert table == "audit_log" and set(row) == set(COLUMNS["audit_log"])
    assert (row["resource_id"], row["actor"], row["recorder"]) == ("warehouse-pg", "key:ab12", "gateway")
