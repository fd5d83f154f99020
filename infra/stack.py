"""The local stack without Docker: Kafka (KRaft, from jars), Redis, ClickHouse and PostgreSQL.

Public API::

    up(settings, log=print) -> list[ComponentStatus]      # idempotent; returns when all are healthy
    down(settings, log=print) -> list[ComponentStatus]    # stops only what `up` started
    status(settings) -> list[ComponentStatus]

Per component, ``up`` does one of:

* *external* (``kafka_external=True`` for Kafka, ``manage_os_services=False`` for the others): nothing is
  installed or started, the configured address is only health-checked;
* *ours, already running* (our pid file under ``<state_dir>/<component>/`` points to a live process of the
  right kind): just health-checked;
* *someone else's server listening on the configured port*: reused as is (``managed=False``; ``down`` never
  touches it);
* otherwise: installed when missing (apt-get, one ``apt-get update`` per ``up``), configured under
  ``<state_dir>/<component>/`` and started detached; ``managed=True``.

Then ClickHouse migrations are applied and the PostgreSQL role/database ensured. A summary of the last
``up`` is written to ``<state_dir>/stack.json`` (informational; pid files are the source of truth).
``up``/``down`` hold ``<state_dir>/stack.lock`` so two of them never race.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, Optional

from .base import Component, ComponentStatus
from .clickhouse_server import ClickHouse
from .kafka_broker import Kafka
from .postgres_server import Postgres
from .procs import Apt, StackError
from .redis_server import Redis

__all__ = ["ComponentStatus", "StackError", "up", "down", "status", "components"]

Log = Callable[[str], None]
COMPONENTS = (Kafka, Redis, ClickHouse, Postgres)


def components(settings, log: Log = print, apt: Optional[Apt] = None) -> list[Component]:
    apt = apt or Apt(log)
    return [cls(settings, log, apt) for cls in COMPONENTS]


@contextlib.contextmanager
def _locked(settings) -> Iterator[None]:
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "stack.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _status_of(c: Component) -> ComponentStatus:
    pid = None if c.external() else c.running_pid()
    if not c.listening():
        ok, detail = False, f"nothing listening on {c.address}"
        if pid:
            detail += f" (our pid {pid} is alive: starting?)"
    else:
        ok, detail = c.check()
    if c.external():
        detail = f"external; {detail}"
    elif pid:
        detail = f"pid {pid}; {detail}"
    elif ok:
        detail = f"reused (not started by us); {detail}"
    return ComponentStatus(c.name, c.address, ok, pid is not None, detail, pid)


def status(settings) -> list[ComponentStatus]:
    """Health of every component; ``managed`` is True only for servers our ``up`` started."""
    return [_status_of(c) for c in components(settings, log=lambda _m: None)]


def _write_state(settings, statuses: list[ComponentStatus]) -> None:
    path = Path(settings.state_dir) / "stack.json"
    payload = {"updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "components": [asdict(s) for s in statuses]}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def _with_stack_passwords(settings):
    """The servers' passwords exist from the first `up` on (services/core/stack_secrets.py); settings made
    before the secret did get them now, so the servers are configured with what every process derives."""
    from services.core.stack_secrets import ensure_secret, local_overrides

    ensure_secret(settings.state_dir)
    update = local_overrides(settings.state_dir, set(settings.model_fields_set), {"redis_url": settings.redis_url,
                                                                           "principal": "admin"})
    return settings.model_copy(update=update) if update else settings


def up(settings, log: Log = print) -> list[ComponentStatus]:
    """Bring the stack up (idempotent) and return once every component is healthy.

    Raises :class:`StackError` naming every component that failed (with log tails); the others are left
    running."""
    with _locked(settings):
        settings = _with_stack_passwords(settings)
        comps = components(settings, log)
        plan: dict[str, tuple[str, Optional[int]]] = {}
        errors: list[str] = []
        # phase 1: decide and launch (servers start in parallel)
        for c in comps:
            try:
                if c.external():
                    plan[c.name] = ("external", None)
                elif (pid := c.running_pid()) is not None:
                    plan[c.name] = ("ours", pid)
                elif c.listening():
                    log(f"{c.name}: something already listens on {c.address}: reusing it")
                    plan[c.name] = ("reused", None)
                else:
                    c.start()
                    pid = c.proc.pid if c.proc is not None else c.running_pid()
                    plan[c.name] = ("started", pid)
                    if pid is None or not c.alive(pid):
                        raise StackError(f"{c.name} exited right after start\n{c.log_tails()}")
            except StackError as e:
                errors.append(f"{c.name}: {e}")
                plan[c.name] = ("failed", None)
        # phase 2: wait for health, then post-start steps
        out: list[ComponentStatus] = []
        for c in comps:
            how, pid = plan[c.name]
            if how == "failed":
                out.append(ComponentStatus(c.name, c.address, False, False, "failed to start"))
                continue
            managed = how in ("ours", "started")
            try:
                timeout = c.start_timeout if managed else 15.0
                c.before_health(managed)
                detail = c.wait_healthy(timeout, pid=pid if managed else None)
                extra = c.after_up(managed)
                if how == "started":
                    log(f"{c.name}: up on {c.address} ({detail})")
                label = {"external": "external", "ours": f"pid {pid}", "started": f"pid {c.running_pid()}",
                         "reused": "reused (not started by us)"}[how]
                out.append(ComponentStatus(c.name, c.address, True, managed,
                                           "; ".join(x for x in (label, detail, extra) if x),
                                           c.running_pid() if managed else None))
            except Exception as e:  # StackError, driver errors
                errors.append(f"{c.name}: {e}")
                out.append(ComponentStatus(c.name, c.address, False, managed, str(e).splitlines()[0][:300],
                                           pid))
        with contextlib.suppress(OSError):
            _write_state(settings, out)
        if errors:
            raise StackError("local stack not healthy:\n" + "\n".join(errors))
        return out


def down(settings, log: Log = print) -> list[ComponentStatus]:
    """Stop the servers our ``up`` started (reused/external ones are left alone)."""
    with _locked(settings):
        out = []
        for c in reversed(components(settings, log)):
            pid = None if c.external() else c.running_pid()
            if pid is None:
                out.append(ComponentStatus(c.name, c.address, False, False, "not ours: left alone"))
                continue
            log(f"stopping {c.name} (pid {pid})")
            ok = c.stop(pid)
            out.append(ComponentStatus(c.name, c.address, False, True,
                                       "stopped" if ok else f"pid {pid} did not stop", pid))
            if not ok:
                log(f"warning: {c.name} pid {pid} did not stop")
        with contextlib.suppress(OSError):
            _write_state(settings, status(settings))
        return list(reversed(out))


def _print_table(rows: list[ComponentStatus]) -> None:
    for s in rows:
        mark = "ok  " if s.healthy else "DOWN"
        who = "managed" if s.managed else "-"
        print(f"{mark} {s.name:<11} {s.address:<32} {who:<8} {s.detail}")


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m infra [up|down|status|migrate]``."""
    from services.core.settings import load_settings
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[0] if argv else "status"
    settings = load_settings()
    try:
        if cmd == "up":
            t0 = time.monotonic()
            _print_table(up(settings))
            print(f"stack up in {time.monotonic() - t0:.1f}s")
        elif cmd == "down":
            down(settings)
            _print_table(status(settings))
        elif cmd == "migrate":
            from .clickhouse_migrations import apply_migrations
            applied = apply_migrations(settings)
            print(f"{len(applied)} migration(s) applied" if applied else "migrations up to date")
        elif cmd == "status":
            rows = status(settings)
            _print_table(rows)
            return 0 if all(r.healthy for r in rows) else 1
        else:
            print("usage: python -m infra [up|down|status|migrate]", file=sys.stderr)
            return 2
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
