"""The supervisor behind `aietl start`: one process that runs the workers and the gateway and restarts a
crashed one with exponential backoff.

Each crash (exit code or signal, the last lines of the child's log) is recorded in
``<run dir>/supervisor.json`` (what `aietl status` shows) and counted in ``<run dir>/supervisor.prom``
(Prometheus text format, for node_exporter's textfile collector). A child that crashes
``supervisor_max_crashes`` times within ``supervisor_crash_window_s`` is marked ``failed``, logged loudly
and left down; the others go on. SIGTERM stops every child, then the supervisor.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from services.core.settings import Settings
from services.processes import gateway_settings, launch, run_dir, stop

log = logging.getLogger("aietl.supervisor")

STATUS_FILE = "supervisor.json"
METRICS_FILE = "supervisor.prom"
LOG_TAIL_LINES = 20


def read_status(settings: Settings) -> dict:
    try:
        return json.loads((run_dir(settings) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def log_tail(path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            return f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


@dataclass
class Child:
    name: str
    args: list[str]
    settings: Settings
    proc: Optional[subprocess.Popen] = None
    state: str = "starting"  # running | backoff | failed | stopped
    restarts: int = 0
    crashes_total: int = 0
    crash_times: deque = field(default_factory=deque)
    last_crash: Optional[dict] = None
    next_start: float = 0.0
    reason: str = ""

    def start(self) -> None:
        self.proc = launch(self.settings, self.name, self.args)
        self.state = "running"

    def to_dict(self) -> dict:
        return {"pid": self.proc.pid if self.proc and self.state == "running" else None, "state": self.state,
                "restarts": self.restarts, "crashes": self.crashes_total, "last_crash": self.last_crash,
                "reason": self.reason}


class Supervisor:
    def __init__(self, settings: Settings, workers: list[str]):
        self.settings = settings
        self.dir = run_dir(settings)
        self.children = {w: Child(w, ["worker", w], settings) for w in workers}
        self.children["gateway"] = Child("gateway", ["gateway"], gateway_settings(settings, workers))
        self.stopping = False
        self.started_at = _now()

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, poll_s: float = 0.2) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        for child in self.children.values():
            child.start()
        self.write()
        try:
            while not self.stopping:
                if self.step(time.monotonic()):
                    self.write()
                time.sleep(poll_s)
        finally:
            self.stop_children()

    def step(self, now: float) -> bool:
        """Notice exits, restart what is due; True when something changed."""
        changed = False
        for child in self.children.values():
            if child.state == "running" and child.proc.poll() is not None:
                self.crashed(child, child.proc.returncode, now)
                changed = True
            elif child.state == "backoff" and now >= child.next_start:
                child.restarts += 1
                child.start()
                log.warning("restarted %s (restart %d): pid %d", child.name, child.restarts, child.proc.pid)
                changed = True
        return changed

    def crashed(self, child: Child, code: int, now: float) -> None:
        s = self.settings
        child.crashes_total += 1
        child.crash_times.append(now)
        while child.crash_times and now - child.crash_times[0] > s.supervisor_crash_window_s:
            child.crash_times.popleft()
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        child.last_crash = {"at": _now(), "pid": child.proc.pid, "exit_code": code,
                            "signal": signal.Signals(-code).name if code < 0 else None,
                            "log_tail": log_tail(self.dir / f"{child.name}.log")}
        (self.dir / f"{child.name}.pid").unlink(missing_ok=True)
        recent = len(child.crash_times)
        if recent >= s.supervisor_max_crashes:
            child.state = "failed"
            child.reason = (f"{recent} crashes within {s.supervisor_crash_window_s:.0f}s (last: {how}); "
                            f"not restarted — fix it and run `aietl stop` + `aietl start`")
            log.error("GIVING UP on %s: %s\n  last log lines:\n    %s", child.name, child.reason,
                      "\n    ".join(child.last_crash["log_tail"]))
            return
        delay = min(s.supervisor_backoff_max_s, s.supervisor_backoff_base_s * 2 ** (recent - 1))
        child.state, child.next_start = "backoff", now + delay
        child.reason = f"crashed ({how}); restarting in {delay:.1f}s"
        log.warning("%s (pid %d) crashed with %s; restart in %.1fs (%d crashes within %.0fs)", child.name,
                    child.proc.pid, how, delay, recent, s.supervisor_crash_window_s)

    def stop_children(self) -> None:
        running = [c for c in self.children.values() if c.state == "running"]
        for child in running:  # SIGTERM all first: they shut down in parallel
            try:
                os.killpg(child.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for child in running:
            stop(child.proc.pid, 15.0)
            child.proc.wait()
        for child in self.children.values():
            (self.dir / f"{child.name}.pid").unlink(missing_ok=True)
            if child.state != "failed":
                child.state, child.reason = "stopped", ""
        self.write()

    # -- what it tells ---------------------------------------------------------------------------------
    def write(self) -> None:
        status = {"supervisor": {"pid": os.getpid(), "started_at": self.started_at, "updated_at": _now(),
                                 "stopping": self.stopping},
                  "children": {n: c.to_dict() for n, c in self.children.items()}}
        _atomic_write(self.dir / STATUS_FILE, json.dumps(status, indent=2))
        _atomic_write(self.dir / METRICS_FILE, self.metrics())

    def metrics(self) -> str:
        rows = [("aietl_worker_crashes_total", "counter", "Crashes of a supervised process.",
                 lambda c: c.crashes_total),
                ("aietl_worker_restarts_total", "counter", "Restarts of a supervised process after a crash.",
                 lambda c: c.restarts),
                ("aietl_worker_up", "gauge", "1 while the supervised process runs.",
                 lambda c: int(c.state == "running")),
                ("aietl_worker_failed", "gauge", "1 once the supervisor gave up on the process.",
                 lambda c: int(c.state == "failed"))]
        prefix = self.settings.topic_prefix
        out = []
        for metric, kind, help_, value in rows:
            out += [f"# HELP {metric} {help_}", f"# TYPE {metric} {kind}"]
            out += [f'{metric}{{worker="{n}",prefix="{prefix}"}} {value(c)}' for n, c in self.children.items()]
        return "\n".join(out) + "\n"


def _atomic_write(path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
