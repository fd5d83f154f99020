"""PipelineHistories folding a writer's own appends from their delivery reports, without Kafka."""
import uuid

from services.core.avro import build_codec
from services.core.histories import PipelineHistories
from services.core.messages import Message, new_envelope
from services.domain.commands import apply_command

CREATE = "aietl.pipelines.v1.CreatePipeline"


def requested(pid=None, history=()):
    pid = pid or str(uuid.uuid4())
    cmd = Message(CREATE, new_envelope(CREATE, tenant_id="acme", actor="user:test", pipeline_id=pid),
                  {"description": "copy orders", "name": None, "labels": {}})
    [event] = apply_command(list(history), cmd)
    return cmd, event


def histories():
    return PipelineHistories(reader=None, codec=build_codec())  # the reader is only used by catch_up


def test_appends_continuing_the_fold_are_folded_with_their_commands_answered():
    h = histories()
    (c1, e1), (c2, e2), (c3, e3) = requested(), requested(), requested()
    assert h.fold_appended([(0, 0, e1), (3, 0, e2), (0, 1, e3)])
    assert h.positions() == {0: 2, 3: 1}
    assert h.history(e1.pipeline_id) == [e1] and h.history(e3.pipeline_id) == [e3]
    assert all(h.already_applied(c.message_id) for c in (c1, c2, c3))


def test_a_gap_before_an_append_folds_nothing_of_that_partition_and_asks_for_a_catch_up():
    h = histories()
    (_, e1), (c2, e2), (c3, e3) = requested(), requested(), requested()
    assert h.fold_appended([(1, 0, e1)])
    # Offset 1 of partition 1 was written by someone else: ours landed at 2.
    assert not h.fold_appended([(1, 2, e2), (5, 0, e3)])
    assert h.positions() == {1: 1, 5: 1}  # partition 5 had no gap and is folded
    assert not h.already_applied(c2.message_id) and h.already_applied(c3.message_id)


def test_appends_a_catch_up_already_read_are_not_folded_twice():
    h = histories()
    _, e1 = requested()
    _, e2 = requested(e1.pipeline_id, [e1])  # the second request of a pipeline: CommandRejected
    assert h.observe(2, 0, e1) and h.observe(2, 1, e2)  # read back from the log by a catch-up
    assert h.fold_appended([(2, 0, e1), (2, 1, e2)])
    assert h.history(e1.pipeline_id) == [e1, e2]
