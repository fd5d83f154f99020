"""Two executor instances share the work without running anything twice, and one takes over the runs of
the other when it dies (its per-pipeline leases expire)."""
import os
import signal
import time
import uuid

import pytest

from services.processes import running, spawn
from tests.harness import wait_for
from tests.integration.test_executor_runs import ch, finished, run_events
from tests.pipelines import draft_and_deploy, drafting_deployment, trigger
from tests.reliability.test_executor_crash import BATCH_ROWS, pg_scalar

pytestmark = pytest.mark.integration
LEASE_S = 3.0


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "scale") as d:
        yield d


def start_executor(dep, instance: str, **overrides) -> int:
    s = dep.settings.model_copy(update={"instance_id": instance, "executor_lease_s": LEASE_S,
                                        "executor_batch_rows": BATCH_ROWS, **overrides})
    return spawn(s, f"executor-{instance}", ["worker", "executor"])


def gone(dep, name: str) -> bool:
    return running(dep.settings).get(name) is None


def test_another_instance_takes_over_a_dead_instances_run_and_two_never_run_one_twice(dep):
    u = uuid.uuid4().hex[:8]
    tables = [f"analytics.scale_{i}_{u}" for i in range(3)]
    pids = [draft_and_deploy(dep, f"Load orders from the PostgreSQL table shop.orders into the ClickHouse table {t}")[0]
            for t in tables]
    source_rows = pg_scalar(dep.settings, "SELECT count(*) FROM shop.orders")

    # Instance b alone dies in the middle of a run; instance a resumes it once b's lease has expired.
    b = start_executor(dep, "b", fault_point="executor.after_batch_event@3")
    first = trigger(dep, pids[0])
    wait_for(lambda: gone(dep, "executor-b"), timeout=120, interval=0.2, what="instance b to die mid-run")
    assert "fault point executor.after_batch_event@3 reached" in dep.log("executor-b")
    start_executor(dep, "a")
    evs = finished(dep, first, timeout=120)
    assert [e.short_name for e in evs].count("RunSucceeded") == 1
    assert [e.payload["attempt"] for e in evs if e.short_name == "RunStarted"] == [1, 2]

    # Both alive: six runs of three pipelines, each run exactly once.
    b = start_executor(dep, "b")
    runs = [trigger(dep, pid) for pid in pids for _ in range(2)]
    for run_id in runs:
        finished(dep, run_id, timeout=180)
    time.sleep(3 * LEASE_S)  # leases change hands as queues drain: nothing may run a finished run again
    for run_id in runs:
        kinds = [e.short_name for e in run_events(dep, run_id)]
        assert kinds.count("RunStarted") == 1 and kinds.count("RunSucceeded") == 1, kinds
    counts = [ch(dep.settings).execute(f"SELECT count() FROM {t}")[0][0] for t in tables]
    assert counts == [3 * source_rows, 2 * source_rows, 2 * source_rows]
    assert all(e.payload["rows_written"] == source_rows
               for r in runs + [first] for e in run_events(dep, r) if e.short_name == "RunSucceeded")
    os.kill(b, signal.SIGKILL)
