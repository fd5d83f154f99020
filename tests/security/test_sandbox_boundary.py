"""The sandbox boundary: the update_wrapper escape and its cousins, the seccomp wall, isolation as a
requirement, the parent's reply cap and its strict reply decoder."""
from __future__ import annotations

import subprocess
import sys

import pytest

from services.agents.qa import sandbox_child
from services.agents.qa.python_rules import check_transform_code
from services.agents.qa.sandbox import PROJECT_ROOT, _child_env, run_transform
from tests.security.corpus import load

ROWS = [{"id": 1, "email": "a@x.org"}]


def escape_programs() -> list[dict]:
    return [p for p in load("python.yaml")["programs"] if p["class"].startswith("escape-")]


@pytest.mark.parametrize("program", escape_programs(), ids=lambda p: p["class"])
def test_escapes_reach_nothing(program):
    """Run as the finding did: whatever the static rules say, the child must not hand back its os module."""
    res = run_transform(program["code"], ROWS)
    assert not res.ok, res.rows
    assert "leak" not in str(res.rows)


def test_the_update_wrapper_escape_is_named_by_both_layers():
    code = next(p["code"] for p in escape_programs() if p["class"] == "escape-update-wrapper")
    assert any("functools.update_wrapper" in f.message for f in check_transform_code(code))
    assert "update_wrapper" in run_transform(code, ROWS).error


@pytest.mark.parametrize("name", ["gi_frame", "f_back", "f_globals", "tb_frame", "cr_frame", "gi_code", "co_code"])
def test_guarded_getattr_refuses_internals_on_any_object(name):
    def gen():
        yield 1

    with pytest.raises(AttributeError, match="not allowed in the sandbox"):
        sandbox_child.guarded_getattr(gen(), name)
    with pytest.raises(AttributeError, match="not allowed in the sandbox"):
        sandbox_child.guarded_getattr(gen(), name, None)  # a default does not turn the refusal into None


def test_guarded_getattr_refuses_str_format_and_frames_entirely():
    with pytest.raises(AttributeError, match="str.format"):
        sandbox_child.guarded_getattr("{0.__class__}", "format")
    with pytest.raises(AttributeError, match="str.format_map"):
        sandbox_child.guarded_getattr(str, "format_map")
    frame = sys._getframe()
    with pytest.raises(AttributeError, match="frame object"):
        sandbox_child.guarded_getattr(frame, "clear")
    assert sandbox_child.guarded_getattr("abc", "upper")() == "ABC"


def test_allowed_modules_offer_only_their_allow_list():
    proxies = sandbox_child.preload_modules()
    for name, allowed in sandbox_child.SAFE_ATTRIBUTES.items():
        offered = {k for k in vars(proxies[name]) if not k.startswith("_")} - {"abc"}
        assert offered <= allowed, (name, offered - allowed)
    assert not hasattr(proxies["functools"], "update_wrapper")
    assert not hasattr(proxies["string"], "Formatter")


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          cwd=str(PROJECT_ROOT), env=_child_env())


def test_seccomp_blocks_sockets_files_and_exec():
    code = ("import socket, os\nfrom services.agents.qa.sandbox_child import install_seccomp\n"
            "print(install_seccomp())\n"
            "for f in (lambda: socket.socket(), lambda: open('/etc/hostname'), lambda: os.execv('/bin/true', ['t']),"
            " lambda: os.listdir('/')):\n"
            "    try:\n        f()\n        print('ALLOWED')\n    except OSError as e:\n        print(e.errno)\n")
    out = _child(code).stdout.split()
    if out[0] != "True":
        pytest.skip("seccomp is not available on this kernel/architecture; the network namespace is then required")
    import errno
    assert out[1:] == [str(errno.EPERM)] * 4, out


def test_isolation_is_a_requirement():
    assert sandbox_child.isolation_problem(False, False, False) == sandbox_child.ISOLATION_UNAVAILABLE
    assert sandbox_child.isolation_problem(True, False, False) is None
    assert sandbox_child.isolation_problem(False, True, False) is None
    assert sandbox_child.isolation_problem(False, False, True) is None  # the operator's loud opt-in


def test_parent_caps_the_reply():
    code = "def transform(batch):\n    return [{'x': 'a' * (3 * 1024 * 1024)}]\n"
    res = run_transform(code, ROWS, max_reply_mb=1)
    assert not res.ok and res.error == "reply larger than 1 MB: the sandbox was stopped"
    assert run_transform(code, ROWS, max_reply_mb=8).ok


@pytest.mark.parametrize("reply", [
    b'{"ok": true, "rows": [{"x": {"$aietl": "decimal", "v": "NaN"}}]}',
    b'{"ok": true, "rows": [{"x": {"$aietl": "decimal", "v": "sNaN"}}]}',
    b'{"ok": true, "rows": [{"x": {"$aietl": "decimal", "v": "Infinity"}}]}',
    b'{"ok": true, "rows": [{"x": {"$aietl": "bytes", "v": "%%%"}}]}',
    b'{"ok": true, "rows": [{"x": {"$aietl": "nope", "v": 1}}]}',
    b'{"ok": true, "rows": [{"x": {"$aietl": "uuid"}}]}',
    b'{"ok": true, "rows": [{"x": {"$aietl": "date", "v": "2024-01-01", "w": 1}}]}',
    b'{"ok": true, "rows": [1]}',
    b'{"ok": true, "rows": {"a": 1}}',
    b'{"ok": true, "rows": [], "error": "x"}',
    b'{"ok": false}',
    b'{"ok": "yes", "rows": []}',
    b'[]',
    b'{"ok": true, "rows": [{"x": 1}]} trailing',
])
def test_strict_decoder_refuses_malformed_replies(reply):
    with pytest.raises(ValueError, match="malformed sandbox reply"):
        sandbox_child.loads_reply(reply)


def test_strict_decoder_accepts_what_the_child_writes():
    import datetime as dt
    import decimal

    rows = [{"d": decimal.Decimal("1.25"), "t": dt.datetime(2024, 1, 2, 3), "b": b"\x00", "n": None}]
    assert sandbox_child.loads_reply(sandbox_child.dumps({"ok": True, "rows": rows}))["rows"] == rows
