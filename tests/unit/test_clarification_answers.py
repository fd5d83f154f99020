"""Answering a clarification: the answer fills the slot the question named, and every answer is kept."""
from services.domain.events import replay
from tests.unit.test_pipeline_aggregate import create_cmd, drive, proposal


def _clarified(missing):
    cmd = create_cmd(description="load the frobs into ClickHouse")
    pid = cmd.pipeline_id
    h, _ = drive([], cmd)
    h, _ = drive(h, proposal(pid, "RecordClarification", revision=1, question="which table?", missing=missing,
                             llm=None))
    return pid, h


def test_an_answer_names_its_slot_on_the_revision_and_accumulates_on_the_pipeline():
    pid, h = _clarified(["source.table", "unrecognized:frobs"])
    h, [rev] = drive(h, proposal(pid, "RevisePipeline", instructions="shop.orders", slot="source.table"))
    assert rev.short_name == "RevisionRequested" and rev.payload["slot"] == "source.table"
    p = replay(h)
    assert p.status == "revising" and p.revision == 2
    assert p.answers == [{"slot": "source.table", "text": "shop.orders"}]
    assert p.current["instructions"] == []  # the answer is not an instruction: the request text stays as it was

    h, _ = drive(h, proposal(pid, "RecordClarification", revision=2, question="what is frobs?",
                             missing=["unrecognized:frobs"], llm=None))
    h, _ = drive(h, proposal(pid, "RevisePipeline", instructions="ignore it", slot="unrecognized:frobs"))
    assert replay(h).answers == [{"slot": "source.table", "text": "shop.orders"},
                                 {"slot": "unrecognized:frobs", "text": "ignore it"}]


def test_an_answer_to_a_slot_the_question_did_not_ask_for_is_rejected():
    pid, h = _clarified(["source.table"])
    _, [rejected] = drive(h, proposal(pid, "RevisePipeline", instructions="daily", slot="schedule"))
    assert rejected.short_name == "CommandRejected" and rejected.payload["error_code"] == "not_asked"
    assert "asks for source.table, not schedule" in rejected.payload["reason"]


def test_a_plain_revision_keeps_working_and_keeps_earlier_answers():
    pid, h = _clarified(["source.table"])
    h, _ = drive(h, proposal(pid, "RevisePipeline", instructions="shop.orders", slot="source.table"))
    h, _ = drive(h, proposal(pid, "RecordClarification", revision=2, question="which target?", missing=["target"],
                             llm=None))
    h, [rev] = drive(h, proposal(pid, "RevisePipeline", instructions="into ClickHouse analytics.x", slot=None))
    assert rev.payload["slot"] is None
    p = replay(h)
    assert p.current["instructions"] == ["into ClickHouse analytics.x"]
    assert p.answers == [{"slot": "source.table", "text": "shop.orders"}]
