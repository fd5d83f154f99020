"""Child side of the transform sandbox: ``python -m services.agents.qa.sandbox_child``.

Protocol: one JSON request on stdin ``{"code", "rows", "memory_mb", "cpu_s", "netns",
"allow_unisolated"}``, one JSON reply on stdout ``{"ok": true, "rows": [...]}`` or
``{"ok": false, "error": "..."}``. Values that JSON lacks (datetime, date, time, timedelta,
Decimal, bytes, UUID) travel as tagged objects, see ``dumps`` / ``loads``; the parent decodes
the reply with the strict ``loads_reply``.

Order matters: everything that needs files, fds or memory (reading the request,
importing the allow-listed modules, RestrictedPython and ctypes) happens first; then the
network is blocked, root privileges dropped, resource limits set and the seccomp filter
installed; only then is the user code compiled and run. Without seccomp and without a
network namespace (``netns``) the child refuses to run user code unless the operator opted in.

What user code can reach: the restricted builtins and, per allowed module, only the callables
named in ``SAFE_ATTRIBUTES``; every attribute access goes through ``guarded_getattr``, which
refuses private names, frame/code/generator internals and ``str.format``.
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
# Each allowed module is handed over as a proxy holding ONLY these names: an explicit allow-list of
# pure callables and constants. Anything that does raw getattr/setattr with a caller-given name
# (functools.update_wrapper/wraps, string.Formatter, operator.attrgetter), creates classes with exec
# and sys._getframe (collections.namedtuple) or reads files (hashlib.file_digest) is left out: a raw
# getattr in C or trusted Python bypasses RestrictedPython's guards and reaches frames, hence the
# child's real globals (os, sys).
SAFE_ATTRIBUTES: dict[str, frozenset[str]] = {
    "math": frozenset({
        "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil", "comb", "copysign", "cos",
        "cosh", "degrees", "dist", "e", "erf", "erfc", "exp", "exp2", "expm1", "fabs", "factorial", "floor",
        "fmod", "frexp", "fsum", "gamma", "gcd", "hypot", "inf", "isclose", "isfinite", "isinf", "isnan",
        "isqrt", "lcm", "ldexp", "lgamma", "log", "log10", "log1p", "log2", "modf", "nan", "nextafter", "perm",
        "pi", "pow", "prod", "radians", "remainder", "sin", "sinh", "sqrt", "sumprod", "tan", "tanh", "tau",
        "trunc", "ulp"}),
    "re": frozenset({
        "compile", "escape", "findall", "finditer", "fullmatch", "match", "search", "split", "sub", "subn",
        "A", "ASCII", "I", "IGNORECASE", "M", "MULTILINE", "S", "DOTALL", "X", "VERBOSE", "U", "UNICODE",
        "error", "Pattern", "Match"}),
    "datetime": frozenset({"date", "datetime", "time", "timedelta", "timezone", "tzinfo", "MINYEAR", "MAXYEAR",
                           "UTC"}),
    "decimal": frozenset({
        "Decimal", "InvalidOperation", "DivisionByZero", "Overflow", "Inexact", "Rounded", "DecimalException",
        "ROUND_CEILING", "ROUND_DOWN", "ROUND_FLOOR", "ROUND_HALF_DOWN", "ROUND_HALF_EVEN", "ROUND_HALF_UP",
        "ROUND_UP", "ROUND_05UP"}),
    "hashlib": frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256",
                          "sha3_384", "sha3_512", "blake2b", "blake2s"}),
    "json": frozenset({"dumps", "loads", "JSONDecodeError"}),
    "statistics": frozenset({
        "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low", "median_high",
        "median_grouped", "mode", "multimode", "quantiles", "pstdev", "pvariance", "stdev", "variance",
        "StatisticsError"}),
    "string": frozenset({"ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
                         "octdigits", "punctuation", "printable", "whitespace", "capwords"}),
    "itertools": frozenset({
        "accumulate", "batched", "chain", "combinations", "combinations_with_replacement", "compress", "count",
        "cycle", "dropwhile", "filterfalse", "groupby", "islice", "pairwise", "permutations", "product",
        "repeat", "starmap", "takewhile", "zip_longest"}),
    "collections": frozenset({"Counter", "OrderedDict", "defaultdict", "deque", "ChainMap"}),
    "collections.abc": frozenset({"Iterable", "Iterator", "Mapping", "MutableMapping", "Sequence",
                                  "MutableSequence", "Set", "MutableSet", "Sized", "Container", "Collection",
                                  "Hashable", "Callable"}),
    "functools": frozenset({"reduce", "partial", "cmp_to_key", "lru_cache", "cache"}),
}
ALLOWED_MODULES = tuple(SAFE_ATTRIBUTES)
# Imported lazily by the allowed modules (datetime.strptime, str.encode); after the limits
# no file can be opened, so they are loaded up front.
_LAZY_DEPENDENCIES = (
    "ctypes", "platform", "_strptime", "encodings.ascii", "encodings.latin_1", "encodings.cp1252",
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
# Objects whose every attribute leads to interpreter internals (frames, code, globals).
_OPAQUE_TYPES = (types.FrameType, types.CodeType, types.TracebackType, types.CellType)
# Suspendable objects: only their driving methods, never their frames or code.
_SUSPENDABLE_TYPES = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_SUSPENDABLE_ATTRS = frozenset({"send", "throw", "close"})
# Attribute names that reach frames, code or globals on any object (RestrictedPython's list and more).
INSPECT_ATTRIBUTES = frozenset({
    "f_back", "f_builtins", "f_code", "f_globals", "f_locals", "f_trace", "f_generator", "f_lasti", "f_lineno",
    "gi_code", "gi_frame", "gi_yieldfrom", "gi_running", "gi_suspended",
    "cr_await", "cr_code", "cr_frame", "cr_origin", "cr_running", "cr_suspended",
    "ag_await", "ag_code", "ag_frame", "ag_running",
    "tb_frame", "tb_next", "tb_lasti", "tb_lineno",
    "co_code", "co_consts", "co_names", "co_varnames", "func_globals", "func_code", "im_func", "im_self",
    "cell_contents", "mro",
})
# str.format / format_map resolve "{0.attr}" and "{0[key]}" with raw getattr/getitem.
_FORMAT_METHODS = frozenset({"format", "format_map"})
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
    """The request (the parent's own rows): tolerant, as the parent wrote it."""
    return json.loads(data, object_hook=_decode)


# The reply is written by code we do not trust: every tagged value must be exactly what ``_encode``
# produces, or the whole reply is refused (no NaN decimals, no half-tagged or unknown tags).
def _strict_str(v) -> str:
    if not isinstance(v, str) or len(v) > 64:
        raise ValueError("tagged value must be a short string")
    return v


def _strict_decimal(v) -> _decimal.Decimal:
    d = _decimal.Decimal(_strict_str(v))
    if not d.is_finite():
        raise ValueError(f"decimal {v!r} is not a finite number")
    return d


def _strict_timedelta(v) -> _dt.timedelta:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) > 1e14:
        raise ValueError("timedelta must be a finite number of seconds")
    return _dt.timedelta(seconds=v)


def _strict_bytes(v) -> bytes:
    if not isinstance(v, str):
        raise ValueError("bytes must be base64 text")
    return base64.b64decode(v, validate=True)


_STRICT_DECODERS = {
    "datetime": lambda v: _dt.datetime.fromisoformat(_strict_str(v)),
    "date": lambda v: _dt.date.fromisoformat(_strict_str(v)),
    "time": lambda v: _dt.time.fromisoformat(_strict_str(v)),
    "timedelta": _strict_timedelta,
    "decimal": _strict_decimal,
    "bytes": _strict_bytes,
    "uuid": lambda v: _uuid.UUID(_strict_str(v)),
}


def _strict_decode(obj: dict):
    if _TAG not in obj:
        return obj
    if set(obj) != {_TAG, "v"} or obj[_TAG] not in _STRICT_DECODERS:
        raise ValueError(f"malformed tagged value {sorted(obj)!r}")
    return _STRICT_DECODERS[obj[_TAG]](obj["v"])


def loads_reply(data: bytes) -> dict:
    """The child's reply, strictly: {"ok": true, "rows": [dict with str keys]} or {"ok": false, "error": str}."""
    try:
        reply = json.loads(data, object_hook=_strict_decode)
    except (ValueError, TypeError, ArithmeticError, RecursionError) as e:
        raise ValueError(f"malformed sandbox reply: {e}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ValueError("malformed sandbox reply: no ok flag")
    if not reply["ok"]:
        if set(reply) != {"ok", "error"} or not isinstance(reply["error"], str):
            raise ValueError("malformed sandbox reply: a failure carries exactly one error text")
        return reply
    rows = reply.get("rows")
    if set(reply) != {"ok", "rows"} or not isinstance(rows, list):
        raise ValueError("malformed sandbox reply: rows must be a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(k, str) for k in row):
            raise ValueError(f"malformed sandbox reply: row {i} is not an object with text keys")
    return reply


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


# seccomp (x86-64): after this filter no socket can be created or connected, no file opened, no program
# executed, no process traced or signalled; each such call fails with EPERM. A second wall next to the
# network namespace, and the only one where `unshare` is not permitted.
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_DENIED_SYSCALLS_X86_64 = {
    "open": 2, "creat": 85, "openat": 257, "openat2": 437, "open_by_handle_at": 304,
    "socket": 41, "connect": 42, "accept": 43, "sendto": 44, "sendmsg": 46, "bind": 49, "listen": 50,
    "socketpair": 53, "accept4": 288, "sendmmsg": 307,
    "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone3": 435, "kill": 62,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
    "mount": 165, "unshare": 272, "setns": 308, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "io_uring_setup": 425, "keyctl": 250, "add_key": 248, "request_key": 249,
    "unlink": 87, "unlinkat": 263, "rename": 82, "renameat": 264, "renameat2": 316, "link": 86,
    "linkat": 265, "symlink": 88, "symlinkat": 266, "mkdir": 83, "mkdirat": 258, "chmod": 90,
    "fchmodat": 268, "mknod": 133, "mknodat": 259, "getdents64": 217, "getdents": 78,
}
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_KILL, _RET_EPERM = 0x7FFF0000, 0x80000000, 0x00050000 | 1


def install_seccomp() -> bool:
    """Install the syscall filter; False where seccomp or this architecture is unavailable."""
    import ctypes
    import platform

    if platform.machine() not in ("x86_64", "AMD64") or not sys.platform.startswith("linux"):
        return False

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    prog = [(ld_abs, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH_X86_64), (ret, 0, 0, _RET_KILL),
            (ld_abs, 0, 0, 0), (jge, 0, 1, _X32_SYSCALL_BIT), (ret, 0, 0, _RET_KILL)]
    for nr in sorted(set(_DENIED_SYSCALLS_X86_64.values())):
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, _RET_EPERM)]
    prog.append((ret, 0, 0, _RET_ALLOW))
    filters = (SockFilter * len(prog))(*[SockFilter(*ins) for ins in prog])
    fprog = SockFprog(len(prog), ctypes.cast(filters, ctypes.POINTER(SockFilter)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0


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
    for name, allowed in SAFE_ATTRIBUTES.items():
        mod = importlib.import_module(name)
        attrs = {k: getattr(mod, k) for k in sorted(allowed) if hasattr(mod, k)}
        proxies[name] = ModuleProxy(name, attrs)
    proxies["collections"].abc = proxies["collections.abc"]
    return proxies


def guarded_getattr(obj, name, *default):
    """RestrictedPython's ``_getattr_`` and the ``getattr`` builtin: no private names, nothing that
    reaches frames, code or globals, no ``str.format`` (it does raw getattr from the format string)."""
    if not isinstance(name, str):
        raise TypeError("attribute name must be a string")
    problem = _attribute_problem(obj, name)
    if problem:
        raise AttributeError(problem)
    return getattr(obj, name, *default)


def _attribute_problem(obj, name: str) -> str | None:
    if name.startswith("_"):
        return f"access to {name!r} is not allowed in the sandbox (private attribute)"
    if name in INSPECT_ATTRIBUTES:
        return f"access to {name!r} is not allowed in the sandbox (interpreter internals)"
    if isinstance(obj, _OPAQUE_TYPES):
        return f"access to {name!r} of a {type(obj).__name__} object is not allowed in the sandbox"
    if isinstance(obj, _SUSPENDABLE_TYPES) and name not in _SUSPENDABLE_ATTRS:
        return f"access to {name!r} of a {type(obj).__name__} object is not allowed in the sandbox"
    if name in _FORMAT_METHODS and (isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))):
        return f"str.{name} is not allowed in the sandbox; use f-strings or concatenation"
    return None


def guarded_hasattr(obj, name) -> bool:
    return isinstance(name, str) and _attribute_problem(obj, name) is None and hasattr(obj, name)


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
    from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence

    import builtins as py_builtins

    builtins = dict(safe_builtins)
    for name in ("list", "dict", "set", "frozenset", "tuple", "enumerate", "zip", "map", "filter", "sum",
                 "min", "max", "any", "all", "sorted", "reversed", "iter", "next", "bytes", "format"):
        builtins[name] = getattr(py_builtins, name)
    builtins["getattr"] = guarded_getattr
    builtins["hasattr"] = guarded_hasattr
    builtins["_getattr_"] = guarded_getattr
    builtins["__import__"] = _make_import(proxies)
    return {
        "__builtins__": builtins,
        "__name__": "transform",
        "__metaclass__": type,
        "_getattr_": guarded_getattr,
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


ISOLATION_UNAVAILABLE = ("sandbox isolation unavailable: neither a network namespace nor seccomp could be "
                         "set up, so transforms are not run (an operator may opt in with "
                         "AIETL_SANDBOX_ALLOW_UNISOLATED=1)")


def isolation_problem(seccomp: bool, netns: bool, allow_unisolated: bool) -> str | None:
    """User code runs only behind seccomp or a network namespace, or when the operator opted out."""
    return None if seccomp or netns or allow_unisolated else ISOLATION_UNAVAILABLE


def main() -> int:
    out = sys.stdout.buffer
    request = loads(sys.stdin.buffer.read())
    memory_mb, cpu_s = int(request["memory_mb"]), int(request["cpu_s"])
    glb = restricted_globals(preload_modules())
    block_network()
    drop_privileges()
    apply_limits(memory_mb, cpu_s)
    problem = isolation_problem(install_seccomp(), bool(request.get("netns")), bool(request.get("allow_unisolated")))
    if problem:
        reply = {"ok": False, "error": problem}
    else:
        reply = run(request["code"], request["rows"], glb, memory_mb, cpu_s)
    out.write(_encode_reply(reply, memory_mb))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
