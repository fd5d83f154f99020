"""Run a generated ``transform(batch)`` in an isolated subprocess (DESIGN.md §8).

Layers, outermost first (each is enough on its own for what it covers):

1. Wall-clock timeout: the parent kills the child's process group after ``timeout_s``.
2. Network namespace: when ``unshare --net`` works (root, or an unprivileged user
   namespace via ``--user --map-root-user``), the child runs in an empty network
   namespace with only a downed loopback: no route anywhere, no DNS. Detected once.
3. Resource limits set by the child before user code runs: RLIMIT_AS (memory),
   RLIMIT_CPU, RLIMIT_NOFILE=3 (no new fd, so no socket and no file), RLIMIT_FSIZE=0,
   RLIMIT_CORE=0, RLIMIT_NPROC=0 (ignored for root, so the child first drops to nobody).
4. In-process: socket constructors replaced by a function raising
   ``PermissionError("network access is not allowed")``.
5. RestrictedPython: guarded attribute/item/iteration/write access, safe builtins
   (no open/exec/eval/__import__), and only allow-listed modules, pre-imported and
   handed over as proxies without their submodules (``statistics.sys`` would leak ``sys``).

The child gets a minimal environment (no secrets) and its stdout is only the JSON reply:
``print`` in user code goes to RestrictedPython's collector.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.agents.qa import sandbox_child

CHILD_MODULE = "services.agents.qa.sandbox_child"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class SandboxResult:
    ok: bool
    rows: list[dict] = field(default_factory=list)
    error: str | None = None
    duration_ms: int = 0  # wall time in the parent, including the child's start-up (~0.1 s)


def run_transform(code: str, rows: list[dict], *, timeout_s: float = 5, memory_mb: int = 256,
                  cpu_s: int = 5) -> SandboxResult:
    """Run ``transform(rows)`` from ``code`` in the sandbox; never raises for user-code failures."""
    started = time.monotonic()
    try:
        payload = sandbox_child.dumps({"code": code, "rows": rows, "memory_mb": memory_mb, "cpu_s": cpu_s})
    except (TypeError, ValueError) as e:
        return SandboxResult(False, [], f"cannot pass the sample rows to the sandbox: {e}", 0)
    out, err, rc, timed_out = _run_child(payload, timeout_s)
    elapsed = int((time.monotonic() - started) * 1000)
    if timed_out:
        return SandboxResult(False, [], f"timed out after {timeout_s:g} s", elapsed)
    ok, result_rows, error = _interpret(out, err, rc, memory_mb, cpu_s)
    return SandboxResult(ok, result_rows, error, elapsed)


def child_command() -> list[str]:
    # -s: no user site-packages; -B: no .pyc writes (FSIZE is 0 anyway).
    return [*network_isolation_prefix(), sys.executable, "-s", "-B", "-m", CHILD_MODULE]


@functools.lru_cache(maxsize=1)
def network_isolation_prefix() -> tuple[str, ...]:
    """``unshare`` arguments that work here, or () when none does (then layers 3-5 remain)."""
    unshare = shutil.which("unshare")
    if not unshare:
        return ()
    for args in (("--net",), ("--user", "--map-root-user", "--net")):
        prefix = (unshare, *args)
        if _works([*prefix, sys.executable, "-c", "pass"]):
            return prefix
    return ()


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10, env=_child_env()).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _child_env() -> dict[str, str]:
    # Nothing inherited: connection secrets and API keys live in the parent's environment.
    return {
        "PATH": os.defpath,
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }


def _run_child(payload: bytes, timeout_s: float) -> tuple[bytes, bytes, int, bool]:
    proc = subprocess.Popen(
        child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_child_env(), cwd=str(PROJECT_ROOT), start_new_session=True,  # own group: killable as a whole
    )
    try:
        out, err = proc.communicate(payload, timeout=timeout_s)
        return out, err, proc.returncode, False
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return out, err, proc.returncode, True


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group id is the child's pid (new session)
    except ProcessLookupError:
        pass


def _interpret(out: bytes, err: bytes, rc: int, memory_mb: int, cpu_s: int) -> tuple[bool, list[dict], str | None]:
    reply = _parse_reply(out)
    if reply is not None:
        return bool(reply.get("ok")), reply.get("rows") or [], reply.get("error")
    return False, [], _crash_message(err, rc, memory_mb, cpu_s)


def _parse_reply(out: bytes) -> dict | None:
    try:
        reply = sandbox_child.loads(out) if out else None
    except ValueError:
        return None
    return reply if isinstance(reply, dict) and "ok" in reply else None


def _crash_message(err: bytes, rc: int, memory_mb: int, cpu_s: int) -> str:
    """The child died without replying: name the likely limit, else the signal or stderr tail."""
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    if "MemoryError" in tail[0]:
        return f"memory limit exceeded ({memory_mb} MB)"
    if rc == -signal.SIGXCPU:
        return f"CPU time limit exceeded ({cpu_s} s)"
    if rc == -signal.SIGKILL:
        return f"sandbox process killed (hard CPU limit of {cpu_s + 1} s or out of memory)"
    if rc < 0:
        return f"sandbox process killed by {signal.Signals(-rc).name}"
    return f"sandbox process failed (exit {rc}): {tail[0] or 'no output'}"
