"""Crash safety of the executor: SIGKILL in the middle of runs, ten times, across runs and phases.

Each planned crash starts the executor with a fault point (services.core.faults) that kills it with SIGKILL
at an exact step of a run: right after RunStarted, between a ClickHouse insert and its batch-key record,
after a batch landed but before its BatchLoaded event, after the event, before RunSucceeded. The next incarnation folds the logs, resumes the unfinished run with
the same cursor and batch keys, and in the end every target must hold exactly the source rows: none
lost, none twice.
"""
import uuid

import psycopg
import pytest
from clickhouse_driver import Client

from services.processes import running
from tests.harness import wait_for
from tests.integration.test_executor_runs import finished, run_events
from tests.pipelines import draft_and_deploy, drafting_deployment, trigger

pytestmark = pytest.mark.integration
BATCH_ROWS = 400  # small batches: every run has several, so crashes can land between them


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "crash") as d:  # the executor is started per crash below
        yield d


def ch(s) -> Client:
    return Client(host=s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                  password=s.clickhouse_password)


def pg_scalar(s, sql):
    with psycopg.connect(s.postgres_dsn) as conn:
        return conn.execute(sql).fetchone()[0]


def crash_with(dep, fault: str) -> None:
    """Start the executor with a fault point and wait until it has killed itself there."""
    dep.start_worker("executor", fault_point=fault, executor_batch_rows=BATCH_ROWS)
    wait_for(lambda: running(dep.settings).get("executor") is None, timeout=120, interval=0.2,
             what=f"the executor to SIGKILL itself at {fault}")
    assert f"fault point {fault} reached: SIGKILL" in dep.log("executor")


def run_clean_until_finished(dep, run_id: str) -> list:
    pid = dep.start_worker("executor", executor_batch_rows=BATCH_ROWS)
    try:
        return finished(dep, run_id, timeout=120)
    finally:
        import os
        import signal
        os.kill(pid, signal.SIGKILL)  # one more unannounced kill, between runs
        wait_for(lambda: running(dep.settings).get("executor") is None, timeout=30, what="executor gone")


def test_ten_sigkills_across_runs_and_phases_lose_and_duplicate_nothing(dep):
    u = uuid.uuid4().hex[:8]
    tables = {"append_ch": f"analytics.crash_a_{u}", "merge_ch": f"analytics.crash_b_{u}",
              "incremental_ch": f"analytics.crash_c_{u}", "append_pg": f"public.crash_d_{u}"}
    pipelines = {
        "append_ch": draft_and_deploy(dep, "Load orders from the PostgreSQL table shop.orders into the ClickHouse "
                                           f"table {tables['append_ch']}")[0],
        "merge_ch": draft_and_deploy(dep, f"Sync shop.orders from PostgreSQL into ClickHouse {tables['merge_ch']}, "
                                          "upserting on order_id")[0],
        "incremental_ch": draft_and_deploy(dep, "Every 15 minutes, incrementally load new or changed rows of "
                                                "shop.orders (by updated_at) from PostgreSQL into ClickHouse "
                                                f"{tables['incremental_ch']}")[0],
        "append_pg": draft_and_deploy(dep, "Load orders from the PostgreSQL table shop.orders into the PostgreSQL "
                                           f"table {tables['append_pg']}")[0],
    }
    plan = [  # (pipeline, crashes on the way, in order); ten in all
        # between a ClickHouse insert and its batch-key record: the intent record decides on resume
        ("append_ch", ["writer.after_clickhouse_insert@2", "executor.after_batch_event@4",
                       "executor.before_run_succeeded"]),
        ("merge_ch", ["executor.after_run_started", "executor.after_batch_write@3"]),
        ("merge_ch", ["executor.before_run_succeeded"]),
        ("incremental_ch", ["executor.after_run_started", "executor.after_batch_write@2"]),
        ("append_pg", ["executor.after_batch_write@5", "executor.after_batch_event@2"]),
    ]
    assert sum(len(faults) for _, faults in plan) == 10
    source_rows = pg_scalar(dep.settings, "SELECT count(*) FROM shop.orders")
    assert source_rows > 4 * BATCH_ROWS
    run_ids = []
    for name, faults in plan:
        run_id = trigger(dep, pipelines[name])
        run_ids.append(run_id)
        for fault in faults:
            crash_with(dep, fault)
        evs = run_clean_until_finished(dep, run_id)
        kinds = [e.short_name for e in evs]
        assert kinds[-1] == "RunSucceeded" and kinds.count("RunSucceeded") == 1, kinds
        batch_nos = [e.payload["batch_no"] for e in evs if e.short_name == "BatchLoaded"]
        assert len(batch_nos) == len(set(batch_nos)), f"a batch was logged twice: {batch_nos}"
        assert kinds.count("RunStarted") >= 2  # it really was resumed

    c = ch(dep.settings)
    for key in ("append_ch", "incremental_ch"):
        count, distinct = c.execute(f"SELECT count(), uniqExact(order_id) FROM {tables[key]}")[0]
        assert (count, distinct) == (source_rows, source_rows), key
    count, distinct = c.execute(f"SELECT count(), uniqExact(order_id) FROM {tables['merge_ch']} FINAL")[0]
    assert (count, distinct) == (source_rows, source_rows)
    assert pg_scalar(dep.settings, f"SELECT count(*) FROM {tables['append_pg']}") == source_rows
    assert pg_scalar(dep.settings, f"SELECT count(DISTINCT order_id) FROM {tables['append_pg']}") == source_rows
    # The logged totals agree with the targets: the log never claims more (or less) than landed.
    first = run_events(dep, run_ids[0])
    assert first[-1].payload["rows_written"] == source_rows
