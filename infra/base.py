"""The shape every local-stack component follows (Kafka, Redis, ClickHouse, PostgreSQL)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .procs import Apt, Log, StackError, pid_alive, port_open, tail, wait_until


@dataclass
class ComponentStatus:
    name: str
    address: str
    healthy: bool
    managed: bool  # True: started by `up` (and stopped by `down`); False: reused / external
    detail: str = ""
    pid: Optional[int] = None


class Component:
    """One server. Subclasses fill in the hooks; :mod:`infra.stack` drives them."""

    name = "component"
    start_timeout = 60.0

    def __init__(self, settings, log: Log, apt: Optional[Apt] = None):
        self.settings = settings
        self.log = log
        self.apt = apt or Apt(log)
        self.dir = Path(settings.state_dir).resolve() / self.name
        self.proc = None  # the Popen of a server this object started (to notice an early exit)

    # -- to override -----------------------------------------------------------------------------
    @property
    def host(self) -> str:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def external(self) -> bool:
        """True when settings say this server is someone else's: only health-check it."""
        return not self.settings.manage_os_services

    def running_pid(self) -> Optional[int]:
        """Pid of the server *we* started, when it is still alive (stale pid files are cleaned up)."""
        raise NotImplementedError

    def check(self) -> tuple[bool, str]:
        """One quick health probe: (healthy, detail)."""
        raise NotImplementedError

    def start(self) -> None:
        """Install if needed, prepare config/data and launch in the background (do not wait)."""
        raise NotImplementedError

    def stop(self, pid: int) -> bool:
        raise NotImplementedError

    def before_health(self, managed: bool) -> None:
        """Runs before the health wait (e.g. ensure the application role exists)."""

    def after_up(self, managed: bool) -> str:
        """Runs once the server is healthy (migrations, roles, …). Returns a detail string."""
        return ""

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / f"{self.name}.log"

    @property
    def error_logs(self) -> list[Path]:
        """Logs whose tails are shown when the component fails to come up."""
        return [self.log_file]

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(f"--- last lines of {p}:\n{tail(p, lines)}" for p in self.error_logs)

    # -- shared ----------------------------------------------------------------------------------
    def alive(self, pid: Optional[int] = None) -> bool:
        """Is the server we started (or ``pid``) still running?"""
        if self.proc is not None and (pid is None or self.proc.pid == pid):
            return self.proc.poll() is None
        return pid_alive(pid) if pid is not None else self.running_pid() is not None

    def listening(self) -> bool:
        return port_open(self.host, self.port)

    def wait_healthy(self, timeout: Optional[float] = None, pid: Optional[int] = None) -> str:
        timeout = self.start_timeout if timeout is None else timeout
        last = [""]

        def probe() -> bool:
            if not self.listening():
                last[0] = f"nothing listening on {self.address}"
                return False
            ok, detail = self.check()
            last[0] = detail
            return ok

        def died() -> Optional[str]:
            if pid is not None and not self.alive(pid):
                return f"{self.name} exited during start-up\n{self.log_tails()}"
            return None

        if not wait_until(probe, timeout, 0.3, abort=died if pid is not None else None):
            raise StackError(f"{self.name} not healthy on {self.address} after {timeout:.0f}s ({last[0]})\n"
                             f"{self.log_tails()}")
        return last[0]
