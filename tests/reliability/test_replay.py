"""The read model is a pure function of the event log: wiped and replayed, it is byte-for-byte the same."""
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
