"""Child side of the transform sandbox: ``python -m services.agents.qa.sandbox_child``.

Protocol: one JSON request on stdin ``{"code", "rows", "memory_mb", "cpu_s"}``, one
JSON reply on stdout ``{"ok": true, "rows": [...]}`` or ``{"ok": false, "error": "..."}``.
Values that JSON lacks (datetime, date, time, timedelta, Decimal, bytes, UUID) travel
as tagged objects, see ``dumps`` / ``loads``; the parent uses the same codec.

Order matters: everything that needs files, fds or memory (reading the request,
importing the allow-listed modules and RestrictedPython) happens first; then the
network is blocked, root privileges dropped and resource limits set; only then is
the user code compiled and run.
"""
from __future__ import annotations

import _socket
import base64
import datetime as _dt
import decimal as _decimal
import importlib
import json
import operator
import os
import resource
import signal
import socket
import sys
import types
import uuid as _uuid

FILENAME = "<transform>"
NETWORK_ERROR = "network access is not allowed"
ALLOWED_MODULES = (
    "math", "re", "datetime", "decimal", "hashlib", "json", "statistics",
    "string", "itertools", "collections", "collections.abc", "functools",
)
# Imported lazily by the allowed modules (datetime.strptime, str.encode); after the limits
# no file can be opened, so they are loaded up front.
_LAZY_DEPENDENCIES = (
    "_strptime", "encodings.ascii", "encodings.latin_1", "encodings.cp1252",
    "encodings.utf_16", "encodings.utf_32", "encodings.idna",
)
# C code (datetime.strptime) imports these through the caller's __import__, i.e. ours.
# User code cannot name them: RestrictedPython rejects names starting with "_".
_INTERNAL_IMPORTS = frozenset({"_strptime"})
# Imports of these get the network message rather than the generic one.
NETWORK_MODULES = frozenset({
    "socket", "_socket", "ssl", "_ssl", "http", "urllib", "urllib3", "ftplib", "smtplib", "poplib",
    "imaplib", "telnetlib", "socketserver", "xmlrpc", "asyncio", "select", "selectors",
    "requests", "httpx", "aiohttp", "websocket", "websockets",
})
# Public names that still give a way out (string.Formatter.get_field does raw getattr).
_UNSAFE_MODULE_ATTRS = {"string": frozenset({"Formatter"})}
NOBODY = 65534
OPEN_FILES = 3  # fds 0-2 are already open; no new file or socket can be created
_TAG = "$aietl"


class CpuLimitExceeded(BaseException):
    """Raised from SIGXCPU; BaseException so `except Exception` in user code does not swallow it."""


# ---------------------------------------------------------------- JSON codec (shared with the parent)


def _encode(value):
    if isinstance(value, _dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, _dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, _dt.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, _dt.timedelta):
        return {_TAG: "timedelta", "v": value.total_seconds()}
    if isinstance(value, _decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, _uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"value of type {type(value).__name__} cannot cross the sandbox boundary")


_DECODERS = {
    "datetime": _dt.datetime.fromisoformat,
    "date": _dt.date.fromisoformat,
    "time": _dt.time.fromisoformat,
    "timedelta": lambda v: _dt.timedelta(seconds=v),
    "decimal": _decimal.Decimal,
    "bytes": base64.b64decode,
    "uuid": _uuid.UUID,
}


def _decode(obj: dict):
    if len(obj) == 2 and obj.get(_TAG) in _DECODERS and "v" in obj:
        return _DECODERS[obj[_TAG]](obj["v"])
    return obj


def dumps(obj) -> bytes:
    return json.dumps(obj, default=_encode, ensure_ascii=False).encode("utf-8")


def loads(data: bytes | str):
    return json.loads(data, object_hook=_decode)


# ---------------------------------------------------------------- isolation


def block_network() -> None:
    """Make every way of creating a socket raise PermissionError(NETWORK_ERROR)."""
    def refuse(*_a, **_k):
        raise PermissionError(NETWORK_ERROR)

    for mod in (socket, _socket):
        for name in ("socket", "socketpair", "fromfd", "create_connection", "create_server",
                     "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
            if hasattr(mod, name):
                setattr(mod, name, refuse)


def drop_privileges() -> None:
    """As root, become nobody: no reading root-only files, and RLIMIT_NPROC starts to apply."""
    if os.geteuid() != 0:
        return
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    except OSError:
        pass  # e.g. inside `unshare --map-root-user` where uid 65534 is not mapped


def apply_limits(memory_mb: int, cpu_s: int) -> None:
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file write then fails with EFBIG instead of killing
    limits = {
        "RLIMIT_CORE": 0,
        "RLIMIT_AS": memory_mb * 1024 * 1024,
        "RLIMIT_CPU": (cpu_s, cpu_s + 1),  # soft → SIGXCPU (handled), hard → SIGKILL
        "RLIMIT_FSIZE": 0,
        "RLIMIT_NOFILE": OPEN_FILES,
        "RLIMIT_NPROC": 0,  # no fork/threads; the kernel ignores it for root, hence drop_privileges()
    }
    for name, value in limits.items():
        soft, hard = value if isinstance(value, tuple) else (value, value)
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (ValueError, OSError, AttributeError):
            pass  # not lowerable here (e.g. hard limit already below); the others still apply


def _on_cpu_limit(_signum, _frame):
    raise CpuLimitExceeded()


# ---------------------------------------------------------------- restricted namespace


class ModuleProxy:
    """Public, non-module attributes of an allow-listed module (``statistics.sys`` would leak sys)."""

    def __init__(self, name: str, attrs: dict):
        self.__dict__.update(attrs)
        self._name = name

    def __getattr__(self, attr: str):
        # Only reached for names not copied in: submodules, private and unsafe names.
        raise AttributeError(f"module {self._name!r} has no attribute {attr!r} in the sandbox")

    def __repr__(self) -> str:
        return f"<module {self._name!r} (sandboxed)>"


def preload_modules() -> dict[str, ModuleProxy]:
    for name in _LAZY_DEPENDENCIES:
        importlib.import_module(name)
    proxies: dict[str, ModuleProxy] = {}
    for name in ALLOWED_MODULES:
        mod = importlib.import_module(name)
        unsafe = _UNSAFE_MODULE_ATTRS.get(name, frozenset())
        attrs = {k: v for k, v in vars(mod).items()
                 if not k.startswith("_") and not isinstance(v, types.ModuleType) and k not in unsafe}
        proxies[name] = ModuleProxy(name, attrs)
    proxies["collections"].abc = proxies["collections.abc"]
    return proxies


def _make_import(proxies: dict[str, ModuleProxy]):
    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            raise ImportError("relative imports are not allowed")
        if name in _INTERNAL_IMPORTS and name in sys.modules:
            return sys.modules[name]
        root = name.split(".")[0]
        if root in NETWORK_MODULES:
            raise PermissionError(f"{NETWORK_ERROR} (import of {name!r})")
        if name not in proxies:
            allowed = ", ".join(sorted(p for p in proxies if "." not in p))
            raise ImportError(f"import of {name!r} is not allowed; allowed modules: {allowed}")
        # `import a.b` binds `a`; `from a.b import c` needs `a.b` itself.
        return proxies[name] if fromlist else proxies[root]
    return guarded_import


def _inplacevar(op: str, x, y):
    ops = {"+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
           "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
           ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
           "@=": operator.imatmul}
    if op not in ops:
        raise SyntaxError(f"unsupported augmented assignment {op}")
    return ops[op](x, y)


def _apply(func, *args, **kwargs):
    return func(*args, **kwargs)


def restricted_globals(proxies: dict[str, ModuleProxy]) -> dict:
    from RestrictedPython import PrintCollector, safe_builtins
    from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
    from RestrictedPython.Guards import (
        full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence, safer_getattr_raise,
    )

    import builtins as py_builtins

    builtins = dict(safe_builtins)
    for name in ("list", "dict", "set", "frozenset", "tuple", "enumerate", "zip", "map", "filter", "sum",
                 "min", "max", "any", "all", "sorted", "reversed", "iter", "next", "bytes", "format"):
        builtins[name] = getattr(py_builtins, name)
    builtins["getattr"] = safer_getattr_raise  # a missing attribute raises, as in Python
    builtins["hasattr"] = lambda obj, name: not str(name).startswith("_") and hasattr(obj, name)
    builtins["__import__"] = _make_import(proxies)
    return {
        "__builtins__": builtins,
        "__name__": "transform",
        "__metaclass__": type,
        "_getattr_": safer_getattr_raise,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_print_": PrintCollector,  # print() output is collected and dropped, never reaches stdout
    }


# ---------------------------------------------------------------- running


class UserError(Exception):
    """A failure to report to the caller as-is."""


def run(code: str, rows: list, glb: dict, memory_mb: int, cpu_s: int) -> dict:
    """Compile, execute, call transform(batch) and check the result; never raises."""
    try:
        return {"ok": True, "rows": _run(code, rows, glb)}
    except UserError as e:
        return {"ok": False, "error": str(e)}
    except MemoryError:
        return {"ok": False, "error": f"memory limit exceeded ({memory_mb} MB){_line_suffix(sys.exc_info()[2])}"}
    except CpuLimitExceeded:
        return {"ok": False, "error": f"CPU time limit exceeded ({cpu_s} s){_line_suffix(sys.exc_info()[2])}"}
    except BaseException as e:  # noqa: BLE001 - any user failure becomes a message
        return {"ok": False, "error": _describe_user_error(e)}


def _run(code: str, rows: list, glb: dict) -> list[dict]:
    from RestrictedPython import compile_restricted_exec

    compiled = compile_restricted_exec(code, filename=FILENAME)
    if compiled.errors:
        raise UserError("restricted compile failed: " + "; ".join(compiled.errors))
    exec(compiled.code, glb)  # noqa: S102 - RestrictedPython bytecode with guarded globals
    transform = glb.get("transform")
    if not callable(transform):
        raise UserError("the code does not define transform(batch)")
    result = transform(rows)
    if isinstance(result, (dict, str, bytes)) or not hasattr(result, "__iter__"):
        raise UserError(f"transform must return a list of dicts (or yield dicts), got {type(result).__name__}")
    return _check_rows(list(result))  # list() also runs a generator's body here


def _check_rows(rows: list) -> list[dict]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"transform output item {i} is {type(row).__name__}, expected dict")
        bad = next((k for k in row if not isinstance(k, str)), None)
        if bad is not None:
            raise UserError(f"transform output row {i}: column name {bad!r} is not a string")
    return rows


def _describe_user_error(e: BaseException) -> str:
    msg = str(e)
    text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return text + _line_suffix(e.__traceback__)


def _line_suffix(tb) -> str:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""


def _encode_reply(reply: dict, memory_mb: int) -> bytes:
    try:
        return dumps(reply)
    except TypeError as e:
        return dumps({"ok": False, "error": f"transform output cannot be returned: {e}"})
    except MemoryError:
        return dumps({"ok": False, "error": f"memory limit exceeded ({memory_mb} MB) while encoding the output"})


def main() -> int:
    out = sys.stdout.buffer
    request = loads(sys.stdin.buffer.read())
    memory_mb, cpu_s = int(request["memory_mb"]), int(request["cpu_s"])
    glb = restricted_globals(preload_modules())
    block_network()
    drop_privileges()
    apply_limits(memory_mb, cpu_s)
    reply = run(request["code"], request["rows"], glb, memory_mb, cpu_s)
    out.write(_encode_reply(reply, memory_mb))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
