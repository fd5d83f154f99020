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

6. seccomp (x86-64): socket, connect, open, execve, ptrace, kill ... fail with EPERM once user
   code runs. Layers 2 or 6 are REQUIRED: with neither the child refuses to run user code,
   unless the operator sets ``AIETL_SANDBOX_ALLOW_UNISOLATED=1`` (logged as a warning every run).

The child gets a minimal environment (no secrets) and its stdout is only the JSON reply:
``print`` in user code goes to RestrictedPython's collector. The parent reads at most
``max_reply_mb`` of it (the child is killed beyond that) and decodes it strictly
(:func:`sandbox_child.loads_reply`): a malformed reply is a failed run, never rows.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.agents.qa import sandbox_child

CHILD_MODULE = "services.agents.qa.sandbox_child"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
ALLOW_UNISOLATED_ENV = "AIETL_SANDBOX_ALLOW_UNISOLATED"
MAX_REPLY_MB = 64
STDERR_TAIL = 64 * 1024
log = logging.getLogger("aietl.sandbox")


@dataclass(frozen=True)
class SandboxResult:
    ok: bool
    rows: list[dict] = field(default_factory=list)
    error: str | None = None
    duration_ms: int = 0  # wall time in the parent, including the child's start-up (~0.1 s)


def run_transform(code: str, rows: list[dict], *, timeout_s: float = 5, memory_mb: int = 256,
                  cpu_s: int = 5, max_reply_mb: int = MAX_REPLY_MB) -> SandboxResult:
    """Run ``transform(rows)`` from ``code`` in the sandbox; never raises for user-code failures."""
    started = time.monotonic()
    netns = bool(network_isolation_prefix())
    allow_unisolated = allow_unisolated_by_operator()
    if not netns and allow_unisolated:
        log.warning("sandbox runs WITHOUT a network namespace (%s=1): only seccomp, if available, and the "
                    "in-process guards stand between generated code and the network", ALLOW_UNISOLATED_ENV)
    try:
        payload = sandbox_child.dumps({"code": code, "rows": rows, "memory_mb": memory_mb, "cpu_s": cpu_s,
                                       "netns": netns, "allow_unisolated": allow_unisolated})
    except (TypeError, ValueError) as e:
        return SandboxResult(False, [], f"cannot pass the sample rows to the sandbox: {e}", 0)
    child = _run_child(payload, timeout_s, max_reply_mb * 1024 * 1024)
    elapsed = int((time.monotonic() - started) * 1000)
    if child.timed_out:
        return SandboxResult(False, [], f"timed out after {timeout_s:g} s", elapsed)
    if child.overflow:
        return SandboxResult(False, [], f"reply larger than {max_reply_mb} MB: the sandbox was stopped", elapsed)
    ok, result_rows, error = _interpret(child.out, child.err, child.rc, memory_mb, cpu_s)
    return SandboxResult(ok, result_rows, error, elapsed)


def allow_unisolated_by_operator() -> bool:
    """The operator's explicit opt-in to run transforms without a network namespace or seccomp."""
    return os.environ.get(ALLOW_UNISOLATED_ENV, "").strip().lower() in ("1", "true", "yes")


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


@dataclass
class _ChildOutput:
    out: bytes = b""
    err: bytes = b""
    rc: int = 0
    timed_out: bool = False
    overflow: bool = False


def _run_child(payload: bytes, timeout_s: float, max_reply: int) -> _ChildOutput:
    proc = subprocess.Popen(
        child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_child_env(), cwd=str(PROJECT_ROOT), start_new_session=True,  # own group: killable as a whole
    )
    result = _ChildOutput()
    out, err = bytearray(), bytearray()

    def read_out() -> None:
        # Bounded: a child that writes more than max_reply is killed, never buffered whole.
        while chunk := proc.stdout.read1(1 << 16):
            if len(out) + len(chunk) > max_reply:
                result.overflow = True
                _kill_group(proc)
                return
            out.extend(chunk)

    def read_err() -> None:
        while chunk := proc.stderr.read1(1 << 16):
            err.extend(chunk)
            del err[:-STDERR_TAIL]

    def write_in() -> None:
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the child died early; its exit status tells why

    threads = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err, write_in)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        result.timed_out = True
        _kill_group(proc)
        proc.wait()
    for t in threads:
        t.join(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    result.out, result.err, result.rc = bytes(out), bytes(err), proc.returncode
    return result


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
    if not out:
        return None
    try:
        return sandbox_child.loads_reply(out)
    except ValueError as e:
        return {"ok": False, "error": str(e)}


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
