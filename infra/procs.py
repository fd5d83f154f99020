"""Small process, port, pid-file and apt helpers shared by the local-stack components.

Nothing here runs at import time.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

Log = Callable[[str], None]


class StackError(RuntimeError):
    """A stack component could not be installed, started or reached."""


# --------------------------------------------------------------------------- ports / waiting

def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, socktype, proto, _, addr in infos:
        with socket.socket(family, socktype, proto) as s:
            s.settimeout(timeout)
            try:
                s.connect(addr)
                return True
            except OSError:
                continue
    return False


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25,
               abort: Optional[Callable[[], Optional[str]]] = None) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes. ``abort`` returning a message stops early
    by raising :class:`StackError` (e.g. when the process we are waiting for died)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if abort is not None:
            why = abort()
            if why:
                raise StackError(why)
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------- processes

def pid_alive(pid: Optional[int]) -> bool:
    """True when ``pid`` is a live (non-zombie) process. Reaps it when it is our own dead child."""
    if not pid or pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def proc_exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def proc_cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def belongs_to(pid: int, exe_names: Sequence[str], home: Path, needle: str = "") -> bool:
    """True when live ``pid`` runs an executable whose basename is in ``exe_names`` (with ``needle`` in its
    command line, if given) and refers to ``home`` (our component folder) in its command line or working
    directory. Tells our server from a recycled pid, from someone else's server of the same kind and from
    e.g. a ``tail -f`` of our log."""
    cmdline = proc_cmdline(pid)
    if not cmdline.strip():
        return pid_alive(pid) and not proc_exe(pid)  # mid-exec or no /proc: benefit of the doubt
    if os.path.basename(proc_exe(pid)).replace(" (deleted)", "") not in exe_names:
        return False
    if needle and needle not in cmdline:
        return False
    home_s = str(home)
    cwd = proc_cwd(pid)
    return home_s + os.sep in cmdline or cmdline.rstrip().endswith(home_s) or cwd == home_s \
        or cwd.startswith(home_s + os.sep)


def find_pid(pred: Callable[[int], bool]) -> Optional[int]:
    """First live process satisfying ``pred`` (scans /proc; None where there is no /proc)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    me = os.getpid()
    for e in entries:
        if e.isdigit() and int(e) != me:
            pid = int(e)
            try:
                if pred(pid) and pid_alive(pid):
                    return pid
            except OSError:
                continue
    return None


def owned_pid(pidfile: Path, exe_names: Sequence[str], home: Path, needle: str = "") -> Optional[int]:
    """Pid of our server: the one in ``pidfile`` when it is alive and :func:`belongs_to` us, else a live
    process that does (an orphan whose pid file was lost: the pid file is rewritten). A stale pid file is
    removed."""
    pid = read_pid(pidfile)
    if pid is not None and pid_alive(pid) and belongs_to(pid, exe_names, home, needle):
        return pid
    found = find_pid(lambda p: bool(proc_cmdline(p).strip()) and belongs_to(p, exe_names, home, needle))
    if found is not None:
        with contextlib.suppress(OSError):
            pidfile.write_text(f"{found}\n")
        return found
    if pid is not None:
        with contextlib.suppress(OSError):
            pidfile.unlink()
    return None


def spawn_detached(argv: Sequence[str], log_path: Path, pidfile: Optional[Path] = None,
                   env: Optional[dict] = None, cwd: Optional[Path] = None) -> subprocess.Popen:
    """Start ``argv`` in its own session (survives our exit and Ctrl-C), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env,
                                cwd=str(cwd) if cwd else None)
    if pidfile is not None:
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{proc.pid}\n")
    return proc


def stop_pid(pid: int, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` and wait; SIGKILL after ``timeout``. True when the process is gone."""
    if not pid_alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if wait_until(lambda: not pid_alive(pid), timeout, 0.2):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return wait_until(lambda: not pid_alive(pid), 10, 0.2)


def run(argv: Sequence[str], log: Optional[Log] = None, check: bool = True, timeout: Optional[float] = None,
        env: Optional[dict] = None, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run a command to completion, capturing output; on failure raise StackError with its output."""
    if log:
        log("$ " + " ".join(str(a) for a in argv))
    try:
        cp = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=str(cwd) if cwd else None)
    except FileNotFoundError as e:
        raise StackError(f"command not found: {argv[0]}") from e
    except subprocess.TimeoutExpired as e:
        raise StackError(f"command timed out after {timeout}s: {' '.join(map(str, argv))}") from e
    if check and cp.returncode != 0:
        out = (cp.stdout + cp.stderr).strip()
        raise StackError(f"command failed ({cp.returncode}): {' '.join(map(str, argv))}\n{out[-4000:]}")
    return cp


# --------------------------------------------------------------------------- users / permissions

def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def as_user(user: Optional[str], argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` so it runs as ``user`` (only when we are root; otherwise as ourselves)."""
    if not user or not is_root():
        return [str(a) for a in argv]
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *map(str, argv)]
    import shlex
    return ["su", user, "-s", "/bin/sh", "-c", " ".join(shlex.quote(str(a)) for a in argv)]


def ensure_traversable(path: Path, log: Optional[Log] = None) -> None:
    """Give "others" the execute (search, not list) bit on every ancestor of ``path`` that lacks it, so a
    service user such as ``postgres`` can reach a data folder under e.g. /root or /work."""
    for parent in reversed(Path(path).resolve().parents):
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            if log:
                log(f"chmod o+x {parent} (so service users can reach {path})")
            os.chmod(parent, mode | stat.S_IXOTH)


# --------------------------------------------------------------------------- apt

class Apt:
    """``apt-get install`` with a single ``apt-get update`` per instance (one instance per ``up``).

    Debian packages such as redis-server, clickhouse-server and postgresql start their system service in
    postinst; we run our own instances instead, so service starts are blocked with a temporary
    ``/usr/sbin/policy-rc.d`` (exit 101) unless one is already in place.
    """

    def __init__(self, log: Log):
        self.log = log
        self.updated = False

    def install(self, packages: Iterable[str], why: str = "") -> None:
        packages = list(packages)
        if not shutil.which("apt-get"):
            raise StackError(f"{' '.join(packages)} missing and apt-get is not available: install it by hand"
                             + (f" ({why})" if why else ""))
        if not is_root():
            raise StackError(f"{' '.join(packages)} missing: run as root (or `sudo apt-get install "
                             f"{' '.join(packages)}`) first")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not self.updated:
            self.log("apt-get update")
            run(["apt-get", "update"], env=env, timeout=600)
            self.updated = True
        self.log(f"apt-get install {' '.join(packages)}" + (f" ({why})" if why else ""))
        with _no_service_start():
            run(["apt-get", "install", "-y", "--no-install-recommends",
                 "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", *packages],
                env=env, timeout=1200)


@contextlib.contextmanager
def _no_service_start():
    policy = Path("/usr/sbin/policy-rc.d")
    created = False
    if not policy.exists():
        with contextlib.suppress(OSError):
            policy.write_text("#!/bin/sh\n# temporary, written by aietl infra: no service starts during install\n"
                              "exit 101\n")
            policy.chmod(0o755)
            created = True
    try:
        yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                policy.unlink()
