"""Starting and stopping the workers and the gateway as background processes.

`aietl start` runs them under a supervisor (services/supervisor.py) that restarts a crashed one;
start_all spawns them unsupervised (the tests' deployments, whose tests kill and restart workers
themselves). Either way each process has ``<run dir>/<name>.pid`` and ``<name>.log``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.core.settings import Settings


def run_dir(settings: Settings) -> Path:
    d = settings.state_dir / "run" / settings.topic_prefix.rstrip(".")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own dead child, or a zombie would look alive to kill(0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIETL_")}
    for field, value in settings.model_dump(exclude_none=True).items():
        if field == "kafka_home":
            env["KAFKA_HOME"] = str(value)
        elif field == "redis_url":  # the child derives its own role's credentials (stack_secrets)
            env["AIETL_REDIS_URL"] = settings.redis_url_configured
        else:
            env[f"AIETL_{field.upper()}"] = str(value)
    return env


SUPERVISOR = "supervisor"


def launch(settings: Settings, name: str, args: list[str]) -> subprocess.Popen:
    """`aietl <args>` in a session of its own, logging to <name>.log, its pid in <name>.pid."""
    d = run_dir(settings)
    with open(d / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", *args], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=settings_env(settings))
    (d / f"{name}.pid").write_text(str(proc.pid))
    return proc


def spawn(settings: Settings, name: str, args: list[str]) -> int:
    pid = _pid(run_dir(settings) / f"{name}.pid")
    return pid if pid else launch(settings, name, args).pid


def gateway_settings(settings: Settings, workers: list[str]) -> Settings:
    """The gateway is ready only when the workers started with it are."""
    return settings.model_copy(update={"processors": ",".join(workers)})


def group_assignments(settings: Settings, processor: str) -> dict[str, set[str]] | None:
    """Topics each member of a processor's consumer group is assigned, or None if the group is not stable."""
    from services.core.kafka import admin_client

    group = f"{settings.topic_prefix}{processor}"
    admin = admin_client(settings)  # keep a reference: the future dies with its client
    desc = admin.describe_consumer_groups([group])[group].result(10)
    if str(desc.state).rsplit(".", 1)[-1] != "STABLE" or not desc.members:
        return None
    return {m.member_id: {tp.topic for tp in m.assignment.topic_partitions} for m in desc.members}


def start_all(settings: Settings, workers: list[str], log=print, timeout: float = 90.0) -> None:
    """Spawn the workers and the gateway; return once the gateway is ready and every worker's group is stable."""
    for w in workers:
        log(f"worker {w}: pid {spawn(settings, w, ['worker', w])}")
    log(f"gateway: pid {spawn(gateway_settings(settings, workers), 'gateway', ['gateway'])}")

    def failed() -> list[str]:
        return [n for n, pid in running(settings).items() if pid is None]

    wait_ready(settings, workers, failed, timeout)


def start_supervised(settings: Settings, workers: list[str], log=print, timeout: float = 90.0) -> None:
    """Start the supervisor (it spawns the workers and the gateway); return once all are ready."""
    from services.supervisor import read_status

    loose = [n for n, pid in running(settings).items() if pid and n != SUPERVISOR]
    if loose and not running(settings).get(SUPERVISOR):
        raise RuntimeError(f"already running without a supervisor: {', '.join(loose)}; `aietl stop` first")
    pid = spawn(settings, SUPERVISOR, ["supervise", "--workers", ",".join(workers)])
    log(f"supervisor: pid {pid} (status in {run_dir(settings) / 'supervisor.json'})")

    def failed() -> list[str]:
        if _pid(run_dir(settings) / f"{SUPERVISOR}.pid") is None:
            return [SUPERVISOR]
        children = read_status(settings).get("children", {})
        return [f"{n} ({c['state']}: {c.get('reason', '')})" for n, c in children.items() if c["state"] == "failed"]

    wait_ready(settings, workers, failed, timeout)
    for name, child in read_status(settings).get("children", {}).items():
        log(f"{name}: pid {child['pid']}")


def wait_ready(settings: Settings, workers: list[str], failed, timeout: float) -> None:
    """Until the gateway's /readyz is 200 and every worker's group is stable; `failed()` names the dead."""
    url = f"http://{settings.gateway_host}:{settings.gateway_port}/readyz"
    waiting = set(workers) | {"gateway"}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        dead = failed()
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited during start-up; see the logs in {run_dir(settings)}")
        for name in sorted(waiting):
            try:
                if name == "gateway":
                    ok = httpx.get(url, timeout=2.0).status_code == 200
                else:
                    ok = group_assignments(settings, name) is not None
            except Exception:  # not up yet: connection refused, group unknown, ...
                ok = False
            if ok:
                waiting.discard(name)
        time.sleep(0.3)
    if waiting:
        raise RuntimeError(f"not ready after {timeout:.0f}s: {sorted(waiting)}; see the logs in {run_dir(settings)}")


def stop_all(settings: Settings, log=print, timeout: float = 15.0) -> None:
    """The supervisor first (it stops its children, and must not restart them), then whatever is left."""
    d = run_dir(settings)
    supervisor = d / f"{SUPERVISOR}.pid"
    others = [p for p in sorted(d.glob("*.pid")) if p != supervisor]
    for pidfile, wait in [(supervisor, 2 * timeout + 5)] + [(p, timeout) for p in others]:
        pid = _pid(pidfile)
        if pid:
            stop(pid, wait)
            log(f"stopped {pidfile.stem} (pid {pid})")
        pidfile.unlink(missing_ok=True)


def stop(pid: int, timeout: float) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def running(settings: Settings) -> dict[str, int | None]:
    return {p.stem: _pid(p) for p in sorted(run_dir(settings).glob("*.pid"))}


def worker_states(settings: Settings) -> dict[str, dict]:
    """Each process of this run dir: the supervisor's record of it, else its pid file."""
    from services.supervisor import read_status

    out: dict[str, dict] = {}
    pids = running(settings)
    if pids.get(SUPERVISOR):
        out[SUPERVISOR] = {"pid": pids[SUPERVISOR], "state": "running"}
        out.update(read_status(settings).get("children", {}))
    for name, pid in pids.items():
        out.setdefault(name, {"pid": pid, "state": "running" if pid else "not running", "restarts": 0,
                              "last_crash": None})
    return out
