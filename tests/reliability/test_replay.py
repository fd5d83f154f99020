"""The read model is a pure function of the event logs (pipelines and runs): wiped and replayed, it is
byte-for-byte the same, whichever order the projector read the two topics in."""
import uuid

import pytest
import redis

from services.projector.readmodel import Keys, model_hash, namespace, wipe
from tests.harness import new_deployment, wait_for

pytestmark = pytest.mark.integration


def test_wipe_and_replay_rebuilds_an_identical_read_model(stack_settings):
    dep = new_deployment(stack_settings, "replay", ["pipeline-aggregate", "projector"]).start()
    r = redis.Redis.from_url(dep.settings.redis_url)
    keys = Keys(namespace(dep.settings.topic_prefix))
    try:
        with dep.client() as c:
            ids = [c.post("/api/v1/pipelines", json={"description": f"pipeline {i}"}).json()["pipeline_id"]
                   for i in range(13)]
            wait_for(lambda: all(c.get(f"/api/v1/pipelines/{i}").status_code == 200 for i in ids),
                     timeout=30, what="all pipelines projected")
        wait_for(lambda: len(list(r.scan_iter(match=f"{keys.ns}pipeline:*:events"))) == 13, timeout=30,
                 what="13 histories")
        before = model_hash(r, keys)
        assert wipe(r, keys) > 0 and model_hash(r, keys) != before
        result = dep.cli("replay")
        assert result.returncode == 0, result.stderr
        assert "replayed 13 events" in result.stdout
        assert model_hash(r, keys) == before
    finally:
        dep.stop()


def test_projector_restarted_on_an_empty_read_model_rebuilds_it(stack_settings):
    dep = new_deployment(stack_settings, "rebuild", ["pipeline-aggregate", "projector"]).start()
    r = redis.Redis.from_url(dep.settings.redis_url)
    keys = Keys(namespace(dep.settings.topic_prefix))
    try:
        with dep.client() as c:
            ids = [c.post("/api/v1/pipelines", json={"description": f"p{i}"}).json()["pipeline_id"] for i in range(5)]
            wait_for(lambda: all(c.get(f"/api/v1/pipelines/{i}").status_code == 200 for i in ids), timeout=30,
                     what="projection")
        before = model_hash(r, keys)
        dep.stop()
        wipe(r, keys)
        dep.start()
        wait_for(lambda: model_hash(r, keys) == before, timeout=30, what="the projector to rebuild")
    finally:
        dep.stop()


def _lifecycle_and_runs(tenant: str) -> list:
    """Three pipelines' lifecycles and runs, both topics' worth: retried, cancelled and streaming runs."""
    from tests.integration.test_projector_runs import Events, artifacts

    out = []
    for _ in range(3):
        ev = Events(tenant)
        r1, r2, s1 = (str(uuid.uuid4()) for _ in range(3))
        out += [ev("PipelineRequested", 0), ev("PipelineDeployed", 1, version=1, artifacts_json=artifacts({})),
                ev("RunRequested", 10, run_id=r1), ev("RunStarted", 11, run_id=r1),
                ev("BatchLoaded", 12, run_id=r1, batch_no=0), ev("RunFailed", 13, run_id=r1, final=False),
                ev("RunStarted", 14, run_id=r1, attempt=2), ev("BatchLoaded", 15, run_id=r1, batch_no=0),
                ev("RunSucceeded", 16, run_id=r1), ev("RunRequested", 20, run_id=r2),
                ev("RunStarted", 21, run_id=r2), ev("RunCancelRequested", 22, run_id=r2),
                ev("RunCancelled", 23, run_id=r2), ev("PipelinePaused", 30), ev("PipelineResumed", 31),
                ev("RunStarted", 40, run_id=s1), ev("BatchLoaded", 41, run_id=s1, batch_no=0)]
    return out


def test_replay_rebuilds_lifecycles_and_runs_identically(stack_settings):
    from tests.integration.test_projector_runs import applied, produce, split_by_topic

    dep = new_deployment(stack_settings, "replayruns", ["projector"]).start()
    r = redis.Redis.from_url(dep.settings.redis_url)
    keys = Keys(namespace(dep.settings.topic_prefix))
    try:
        pipeline_events, run_events = split_by_topic(_lifecycle_and_runs(dep.settings.tenant_id))
        # Runs first: live projection sees the executor's events before the requests, replay the other way.
        produce(dep, "runs.events.v1", run_events)
        produce(dep, "pipelines.events.v1", pipeline_events)
        wait_for(lambda: applied(r, keys, dep, "pipelines.events.v1") == len(pipeline_events)
                 and applied(r, keys, dep, "runs.events.v1") == len(run_events), timeout=60, what="all projected")
        assert len(list(r.scan_iter(match=f"{keys.ns}run:*:events"))) == 9
        before = model_hash(r, keys)
        assert wipe(r, keys) > 0 and model_hash(r, keys) != before
        result = dep.cli("replay")
        assert result.returncode == 0, result.stderr
        assert f"replayed {len(pipeline_events) + len(run_events)} events" in result.stdout
        assert model_hash(r, keys) == before

        dep.stop()  # and a projector started on an empty read model rebuilds the same from both topics
        wipe(r, keys)
        dep.start()
        wait_for(lambda: model_hash(r, keys) == before, timeout=60, what="the projector to rebuild")
    finally:
        dep.stop()


def test_a_read_model_lost_under_a_running_projector_is_rebuilt_from_the_logs(stack_settings):
    """Redis flushed (or restarted without its data) while the projector runs: it notices that partitions it
    projected have no stored offset any more and rebuilds from offset 0, so pipelines requested before the
    loss are served again and those requested after have their whole history. Before, they stayed 404 until
    the projector was restarted, and later events were applied onto nothing."""
    dep = new_deployment(stack_settings, "lost", ["pipeline-aggregate", "projector"]).start()
    r = redis.Redis.from_url(dep.settings.redis_url)
    keys = Keys(namespace(dep.settings.topic_prefix))
    try:
        with dep.client() as c:
            before = [c.post("/api/v1/pipelines", json={"description": f"b{i}"}).json()["pipeline_id"]
                      for i in range(4)]
            wait_for(lambda: all(c.get(f"/api/v1/pipelines/{i}").status_code == 200 for i in before), timeout=30,
                     what="projection")
            model = model_hash(r, keys)
            assert wipe(r, keys) > 0 and not r.exists(keys.offsets)  # every key of the model, offsets too
            # No new event: the projector's periodic check notices on its own.
            wait_for(lambda: model_hash(r, keys) == model, timeout=30, what="the lost model rebuilt")
            wipe(r, keys)
            after = [c.post("/api/v1/pipelines", json={"description": f"a{i}"}).json()["pipeline_id"]
                     for i in range(3)]  # a live event arrives first: noticed before it is applied
            wait_for(lambda: all(c.get(f"/api/v1/pipelines/{i}").status_code == 200 for i in before + after),
                     timeout=30, what="every pipeline served again")
            for pid in before + after:
                assert [e["type"] for e in c.get(f"/api/v1/pipelines/{pid}/events").json()["events"]] == \
                    ["PipelineRequested"], pid
        live = model_hash(r, keys)
        replayed = dep.cli("replay")  # and what was rebuilt is what a replay gives
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 7 events" in replayed.stdout and model_hash(r, keys) == live
    finally:
        dep.stop()
