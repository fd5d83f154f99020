"""`aietl start` supervises: a killed worker is restarted with its crash on record, and a worker that
cannot start is given up on loudly (marked failed) while the rest keep running."""
from __future__ import annotations

import json
import os
import signal

import pytest

from services.processes import _alive, run_dir
from services.supervisor import read_status
from tests.harness import new_deployment, prepare_topics, wait_for


@pytest.fixture
def supervised(stack_settings):
    deps = []

    def make(tag: str, **overrides):
        dep = new_deployment(stack_settings, tag, [])
        dep.settings = dep.settings.model_copy(update=overrides)
        prepare_topics(dep.settings)
        deps.append(dep)
        return dep

    yield make
    for dep in deps:
        dep.remove()


def _child(dep, name: str) -> dict:
    return read_status(dep.settings).get("children", {}).get(name, {})


def test_a_sigkilled_worker_is_restarted_and_its_crash_recorded(supervised):
    dep = supervised("sup")
    started = dep.cli("start", "--workers", "metrics-sink")
    assert started.returncode == 0, started.stdout + started.stderr
    supervisor = int((run_dir(dep.settings) / "supervisor.pid").read_text())
    victim = _child(dep, "metrics-sink")["pid"]

    os.killpg(victim, signal.SIGKILL)
    child = wait_for(lambda: (c := _child(dep, "metrics-sink")).get("state") == "running"
                     and c.get("restarts") == 1 and c, timeout=60, what="metrics-sink restarted")
    assert child["pid"] != victim and _alive(child["pid"])
    assert child["last_crash"]["pid"] == victim
    assert child["last_crash"]["signal"] == "SIGKILL" and child["last_crash"]["exit_code"] == -9
    assert child["last_crash"]["log_tail"], "the crash keeps the last lines of the worker's log"
    metrics = (run_dir(dep.settings) / "supervisor.prom").read_text()
    assert f'aietl_worker_crashes_total{{worker="metrics-sink",prefix="{dep.settings.topic_prefix}"}} 1' in metrics

    # The restarted worker rejoins its group: `aietl status --json` says ready again, with the restart.
    def ready():
        out = dep.cli("status", "--json")
        doc = json.loads(out.stdout)
        return doc["readiness"]["ready"] and doc
    doc = wait_for(ready, timeout=60, interval=1, what="ready again")
    assert doc["workers"]["metrics-sink"]["restarts"] == 1
    assert doc["readiness"]["processors"]["metrics-sink"]["members"] == 1
    assert doc["readiness"]["processors"]["metrics-sink"]["lag"] is not None

    stopped = dep.cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not _alive(supervisor) and not _alive(child["pid"])
    assert not list(run_dir(dep.settings).glob("*.pid"))


def test_a_worker_that_exits_at_once_is_given_up_on_loudly(supervised):
    # An invalid log level makes the worker exit with code 1 before it connects to anything.
    dep = supervised("supfail", log_level="bogus", supervisor_max_crashes=3, supervisor_backoff_base_s=0.1)
    started = dep.cli("start", "--workers", "scheduler", "--timeout", "60")
    assert started.returncode == 1, started.stdout + started.stderr
    assert "scheduler (failed" in started.stderr, started.stderr

    child = _child(dep, "scheduler")
    assert child["state"] == "failed" and child["crashes"] == 3 and child["restarts"] == 2
    assert child["last_crash"]["exit_code"] == 1 and child["last_crash"]["signal"] is None
    assert any("bogus" in line.lower() for line in child["last_crash"]["log_tail"]), child["last_crash"]
    assert "GIVING UP on scheduler" in dep.log("supervisor")
    assert 'aietl_worker_failed{worker="scheduler"' in (run_dir(dep.settings) / "supervisor.prom").read_text()
    # The others go on: the gateway still runs, and it is honest about the missing processor.
    assert _child(dep, "gateway")["state"] == "running"
    with dep.client() as c:
        ready = c.get("/readyz")
    assert ready.status_code == 503 and ready.json()["missing"] == ["scheduler"], ready.text
    status = dep.cli("status")
    assert "scheduler: failed" in status.stdout, status.stdout
