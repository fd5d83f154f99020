"""Servers of the stack restarted (or emptied) under a running deployment, with counts (issue 11, item 6).

One drafting deployment with an executor serves every case; each fault is injected on the stack's real
server (stopped and started again the way `aietl up` does it, tests/reliability/faults.py):

* Redis restarted, then the deployment's read model flushed, while pipelines are requested and runs
  triggered through the gateway: afterwards every accepted request is served once, in its final state,
  and the read model equals one rebuilt from the event logs (the projector replays);
* ClickHouse, PostgreSQL and the Kafka broker each restarted during a run loading generated rows from
  PostgreSQL into ClickHouse: the run completes (failed attempts are retried) and the target holds exactly
  the source rows, none lost, none twice.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest
import redis
from clickhouse_driver import Client

from services.core.avro import build_codec
from services.core.eventlog import read_all
from services.processes import running
from services.projector.app import catch_up_all
from services.projector.readmodel import Keys, model_hash, namespace
from tests.harness import unique_prefix, wait_for
from tests.integration.test_executor_runs import finished, run_events
from tests.pipelines import DRAFT_DONE, draft_and_deploy, drafting_deployment
from tests.reliability.faults import Patient, restart_server, server_down

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
SOURCE_ROWS = 100_000
BATCH_ROWS = 5_000  # 20 batches: the restart lands in the middle of the run
EXECUTOR = {"executor_batch_rows": BATCH_ROWS, "executor_max_attempts": 10, "executor_retry_base_s": 0.5}


@pytest.fixture(scope="module")
def dep(stack_settings, source):
    # The scheduler and kafka-trigger too: their ticks read the event log, which a broker restart interrupts.
    # After the source table exists: the schema analyst caches a connection's table list.
    with drafting_deployment(stack_settings, "srvfault", extra_workers=("scheduler", "kafka-trigger")) as d:
        d.start_worker("executor", **EXECUTOR)
        yield d


def ch(s) -> Client:
    return Client(host=s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                  password=s.clickhouse_password)


@pytest.fixture(scope="module")
def source(stack_settings):
    """shop.faultsrc_<u>: SOURCE_ROWS generated orders (dropped at the end)."""
    table = f"shop.faultsrc_{uuid.uuid4().hex[:8]}"
    from services.demo.load import ensure_demo_data

    ensure_demo_data(stack_settings)  # the shop schema
    with psycopg.connect(stack_settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (order_id bigint PRIMARY KEY, customer_id int NOT NULL, "
                     "amount numeric(10,2) NOT NULL, status text NOT NULL, updated_at timestamptz NOT NULL)")
        conn.execute(f"INSERT INTO {table} SELECT g, g % 997, (g % 10000) / 100.0, "
                     f"(ARRAY['paid','pending','refunded'])[1 + g % 3], "
                     f"timestamptz '2026-01-01' + g * interval '1 second' FROM generate_series(1, {SOURCE_ROWS}) g")
    yield table
    with psycopg.connect(stack_settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def alive_check(dep) -> None:
    """No worker died, and none lives on with its Faust app or an agent crashed (the process idles)."""
    dead = [n for n, pid in running(dep.settings).items() if pid is None]
    assert not dead, f"workers died: {dead}"
    crashed = [n for n in running(dep.settings) if "]: Crashed reason=" in dep.log(n)]  # app or one agent
    assert not crashed, f"workers whose app crashed: {crashed}"


def pipeline_histories(dep) -> dict[str, list[tuple[str, str]]]:
    """pipeline id -> [(event short name, causation id)] as logged on pipelines.events.v1."""
    codec = build_codec(dep.settings.schema_registry_url)
    out: dict[str, list] = {}

    def collect(rec):
        name, record = codec.decode(rec.value)
        env = record["envelope"]
        out.setdefault(env["pipeline_id"], []).append((name.rsplit(".", 1)[-1], env["causation_id"]))

    read_all(dep.settings, dep.topic("pipelines.events.v1"), collect)
    return out


def replayed_hash(dep) -> str:
    """The read model the logs give, projected into a scratch namespace of its own (removed after)."""
    from services.core.dlq import DeadLetters
    from services.projector.app import Gate

    r = redis.Redis.from_url(dep.settings.redis_url)
    keys = Keys(namespace(unique_prefix("scratch")))
    try:
        catch_up_all(dep.settings, r, build_codec(dep.settings.schema_registry_url), keys,
                     DeadLetters(dep.settings, "replay"), Gate())
        return model_hash(r, keys)
    finally:
        for key in list(r.scan_iter(match=f"{keys.ns}*", count=500)):
            r.delete(key)
        r.close()


def flush_read_model(dep) -> int:
    """What a FLUSHALL does to this deployment: every key of its read model gone, offsets too."""
    r = redis.Redis.from_url(dep.settings.redis_url)
    try:
        ns = namespace(dep.settings.topic_prefix)
        batch = list(r.scan_iter(match=f"{ns}*", count=1000))
        return r.delete(*batch) if batch else 0
    finally:
        r.close()


class Traffic(threading.Thread):
    """A client that keeps requesting pipelines and runs through the gateway while a fault is injected."""

    def __init__(self, dep, deployed: str, pipelines: int, runs: int, gap_s: float):
        super().__init__(daemon=True)
        self.dep, self.deployed, self.n_pipelines, self.n_runs, self.gap_s = dep, deployed, pipelines, runs, gap_s
        self.pipelines: dict[str, str] = {}  # pipeline id -> command id (202 only)
        self.runs: list[str] = []
        self.refused: list[tuple[int, str]] = []
        self.client = None
        self.error = None

    def run(self):
        try:
            with self.dep.client(timeout=30) as http:
                self.client = Patient(http)
                for i in range(max(self.n_pipelines, self.n_runs)):
                    if i < self.n_pipelines:
                        r = self.client.post("/api/v1/pipelines", json={"description": (
                            "Load orders from the PostgreSQL table shop.orders into the ClickHouse table "
                            f"analytics.rfault_{uuid.uuid4().hex[:8]}")})
                        if r.status_code == 202:
                            self.pipelines[r.json()["pipeline_id"]] = r.json()["command_id"]
                        else:
                            self.refused.append((r.status_code, r.text[:200]))
                    if i < self.n_runs:
                        r = self.client.post(f"/api/v1/pipelines/{self.deployed}/runs", json={"params": {}})
                        if r.status_code == 202:
                            self.runs.append(r.json()["run_id"])
                        else:
                            self.refused.append((r.status_code, r.text[:200]))
                    time.sleep(self.gap_s)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def run_done(http, run_id):
    got = http.get(f"/api/v1/runs/{run_id}")
    return got.status_code == 200 and got.json()["status"] in ("succeeded", "failed", "cancelled") and got.json()


def test_redis_restart_and_flush_the_read_model_is_rebuilt_from_the_log(dep, figures):
    started = time.monotonic()
    table = f"analytics.rfault_run_{uuid.uuid4().hex[:8]}"
    try:
        deployed, _ = draft_and_deploy(dep, "Load orders from the PostgreSQL table shop.orders into the ClickHouse "
                                            f"table {table}")
        with dep.client(timeout=30) as http:
            before = {p: http.get(f"/api/v1/pipelines/{p}").json() for p in [deployed]}
        injected, phases = 0, []
        for fault in ("restart", "flush"):
            traffic = Traffic(dep, deployed, pipelines=4, runs=2, gap_s=0.5)
            traffic.start()
            time.sleep(1.0)
            if fault == "restart":
                restart_server(dep.settings, "redis", pause_s=2.0)
            else:
                assert flush_read_model(dep) > 0
            injected += 1
            traffic.join(180)
            assert not traffic.is_alive() and traffic.error is None, traffic.error
            phases.append(traffic)

        accepted = {p: c for t in phases for p, c in t.pipelines.items()}
        runs = [r for t in phases for r in t.runs]
        with dep.client(timeout=30) as http:
            def drafted():
                states = {p: http.get(f"/api/v1/pipelines/{p}") for p in accepted}
                return all(s.status_code == 200 and s.json()["status"] in DRAFT_DONE
                           for s in states.values()) and states

            states = wait_for(drafted, timeout=240, interval=1, what="every accepted request drafted and served")
            run_states = {r: wait_for(lambda: run_done(http, r), timeout=180, interval=1, what=f"run {r}")
                          for r in runs}
            after = {p: http.get(f"/api/v1/pipelines/{p}").json() for p in before}
            items = http.get("/api/v1/pipelines", params={"limit": 500}).json()["items"]
            listed = {item["pipeline_id"] for item in items}
        histories = pipeline_histories(dep)
        requested = {p: [c for kind, c in histories.get(p, []) if kind == "PipelineRequested"] for p in accepted}
        lost = [p for p in accepted if p not in listed or not requested[p]]
        duplicated = [p for p, cs in requested.items() if len(cs) > 1]
        # Every event the log holds is in the served history exactly once (none lost, none twice).
        served_events = {p: len(http_events) for p, http_events in
                         ((p, _events(dep, p)) for p in list(accepted) + [deployed])}
        logged_events = {p: len(histories.get(p, [])) for p in served_events}
        same_model = wait_for(lambda: _model_matches(dep), timeout=30, interval=1, what="the read model to equal "
                                                                                       "the log's")
        server_errors = [e for t in phases for e in t.client.server_errors]
        unavailable = sum(t.client.unavailable for t in phases)
        sent = sum(t.client.attempts for t in phases)
        figures("fault: redis restart and read-model flush", json.dumps({
            "fault": "Redis stopped 2 s and started again, then every key of the deployment's read model deleted "
                     "(offsets too), each while pipelines were requested and runs triggered through the gateway",
            "injected": injected, "requests_sent": sent, "answered_503": unavailable,
            "answered_5xx": len(server_errors),
            "pipelines_accepted": len(accepted), "pipelines_drafted": sum(1 for s in states.values()),
            "runs_accepted": len(runs), "runs_finished": len(run_states),
            "lost": len(lost) + sum(max(0, logged_events[p] - served_events[p]) for p in served_events),
            "duplicated": len(duplicated) + sum(max(0, served_events[p] - logged_events[p]) for p in served_events),
            "final_state_correct": same_model, "seconds": round(time.monotonic() - started),
            "command": "python -m pytest tests/reliability/test_server_restarts.py -q -k redis"}))
        assert not server_errors, server_errors
        assert not [r for t in phases for r in t.refused], [r for t in phases for r in t.refused]
        assert lost == [] and duplicated == [], (lost, duplicated)
        assert served_events == logged_events, (served_events, logged_events)
        assert all(s["status"] == "succeeded" for s in run_states.values()), run_states
        assert after[deployed]["lifecycle"] == before[deployed]["lifecycle"] == "deployed"
        assert after[deployed]["last_run"]["run_id"] in runs
        alive_check(dep)
    finally:
        ch(dep.settings).execute(f"DROP TABLE IF EXISTS {table}")


def _events(dep, pid) -> list:
    with dep.client(timeout=30) as http:
        r = http.get(f"/api/v1/pipelines/{pid}/events")
        assert r.status_code == 200, r.text
        return r.json()["events"]


def _model_matches(dep) -> bool:
    r = redis.Redis.from_url(dep.settings.redis_url)
    try:
        return model_hash(r, Keys(namespace(dep.settings.topic_prefix))) == replayed_hash(dep)
    finally:
        r.close()


@pytest.mark.parametrize("server", ["clickhouse", "postgres", "kafka"])
def test_a_server_restarted_during_a_load_the_target_holds_exactly_the_source_rows(dep, source, server, figures):
    started = time.monotonic()
    target = f"analytics.loadfault_{server}_{uuid.uuid4().hex[:8]}"
    pid, _ = draft_and_deploy(dep, f"Load orders from the PostgreSQL table {source} into the ClickHouse table "
                                   f"{target}")
    c = ch(dep.settings)
    try:
        with dep.client(timeout=30) as http:
            r = Patient(http).post(f"/api/v1/pipelines/{pid}/runs", json={"params": {}})
            assert r.status_code == 202, r.text
            run_id = r.json()["run_id"]
        # The fault lands once the first batches are in, well before the last one.
        wait_for(lambda: sum(e.short_name == "BatchLoaded" for e in run_events(dep, run_id)) >= 2, timeout=120,
                 interval=0.2, what="two batches loaded")
        with server_down(dep.settings, server, pause_s=2.0):
            landed_at_fault = sum(e.short_name == "BatchLoaded" for e in run_events(dep, run_id)) \
                if server != "kafka" else None
        evs = finished(dep, run_id, timeout=300)
        kinds = [e.short_name for e in evs]
        count, distinct = c.execute(f"SELECT count(), uniqExact(order_id) FROM {target}")[0]
        batch_nos = [e.payload["batch_no"] for e in evs if e.short_name == "BatchLoaded"]
        figures(f"fault: {server} restart during a load", json.dumps({
            "fault": f"{server} stopped 2 s and started again in the middle of a run loading {SOURCE_ROWS} "
                     f"generated rows PostgreSQL -> ClickHouse (append, {BATCH_ROWS} rows a batch)",
            "injected": 1, "runs": 1, "runs_finished": int(kinds[-1] in ("RunSucceeded", "RunFailed")),
            "attempts": kinds.count("RunStarted"), "failed_attempts": kinds.count("RunFailed"),
            "batches_before_fault": landed_at_fault, "source_rows": SOURCE_ROWS, "target_rows": count,
            "lost": SOURCE_ROWS - distinct, "duplicated": count - distinct,
            "duplicate_batch_events": len(batch_nos) - len(set(batch_nos)),
            "final_state_correct": kinds[-1] == "RunSucceeded" and count == distinct == SOURCE_ROWS,
            "seconds": round(time.monotonic() - started),
            "command": f"python -m pytest tests/reliability/test_server_restarts.py -q -k {server}"}))
        assert kinds[-1] == "RunSucceeded" and kinds.count("RunSucceeded") == 1, kinds
        assert len(batch_nos) == len(set(batch_nos)), f"a batch was logged twice: {batch_nos}"
        assert (count, distinct) == (SOURCE_ROWS, SOURCE_ROWS), (count, distinct)
        assert evs[-1].payload["rows_written"] == SOURCE_ROWS
        alive_check(dep)
    finally:
        c.execute(f"DROP TABLE IF EXISTS {target}")
