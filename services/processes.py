"""Starting and stopping the workers and the gateway as background processes (`aietl start|stop`)."""
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
        else:
            env[f"AIETL_{field.upper()}"] = str(value)
    return env


def spawn(settings: Settings, name: str, args: list[str]) -> int:
    d = run_dir(settings)
    pidfile = d / f"{name}.pid"
    pid = _pid(pidfile)
    if pid:
        return pid
    log = open(d / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", *args], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=settings_env(settings))
    pidfile.write_text(str(proc.pid))
    return proc.pid


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
    log(f"gateway: pid {spawn(settings, 'gateway', ['gateway'])}")
    url = f"http://{settings.gateway_host}:{settings.gateway_port}/readyz"
    waiting = set(workers) | {"gateway"}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        dead = [n for n, pid in running(settings).items() if pid is None]
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
    for pidfile in sorted(run_dir(settings).glob("*.pid")):
        pid = _pid(pidfile)
        if pid:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            log(f"stopped {pidfile.stem} (pid {pid})")
        pidfile.unlink(missing_ok=True)


def running(settings: Settings) -> dict[str, int | None]:
    return {p.stem: _pid(p) for p in sorted(run_dir(settings).glob("*.pid"))}
