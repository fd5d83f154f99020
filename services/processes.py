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


def spawn(settings: Settings, name: str, args: list[str]) -> int:
    d = run_dir(settings)
    pidfile = d / f"{name}.pid"
    pid = _pid(pidfile)
    if pid:
        return pid
    log = open(d / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", *args], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())
    pidfile.write_text(str(proc.pid))
    return proc.pid


def start_all(settings: Settings, workers: list[str], log=print, timeout: float = 60.0) -> None:
    for w in workers:
        log(f"worker {w}: pid {spawn(settings, w, ['worker', w])}")
    log(f"gateway: pid {spawn(settings, 'gateway', ['gateway'])}")
    url = f"http://{settings.gateway_host}:{settings.gateway_port}/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"gateway not ready at {url} after {timeout:.0f}s; see {run_dir(settings)}/gateway.log")


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
