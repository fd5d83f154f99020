"""Python transform rules (static) and the sandbox that runs transforms (subprocess, limits, no network)."""
from __future__ import annotations

import datetime as dt
import decimal
import subprocess
import sys
import textwrap

import pytest

from services.agents.qa.python_rules import check_transform_code
from services.agents.qa.sandbox import (
    PROJECT_ROOT, _child_env, network_isolation_prefix, run_transform,
)

GOOD = textwrap.dedent("""
    import re
    from collections import Counter

    EMAIL = re.compile(r"\\s+")

    def transform(batch):
        return [dict(row, email=EMAIL.sub("", row["email"]).lower()) for row in batch]
""")

ROWS = [{"id": 1, "email": " Alice@Example.COM "}, {"id": 2, "email": "BOB@example.com"}]


def src(code: str) -> str:
    return textwrap.dedent(code).lstrip()


# ---------------------------------------------------------------- static rules


def test_rules_accept_good_transform():
    assert check_transform_code(GOOD) == []


@pytest.mark.parametrize("code, rule, fragment", [
    ("import os\ndef transform(batch):\n    return batch\n", "import", "line 1, col 1: import of `os` is not allowed"),
    ("from subprocess import run\ndef transform(batch):\n    return batch\n", "import", "import of `subprocess`"),
    ("def transform(batch):\n    return [r.__class__ for r in batch]\n", "dunder", "line 2, col 13: access to `.__class__`"),
    ("def transform(batch):\n    return eval('batch')\n", "forbidden-name", "`eval` is not allowed"),
    ("def transform(batch):\n    return open('/etc/passwd').read()\n", "forbidden-name", "`open` is not allowed"),
    ("def transform(batch):\n    return __import__('os')\n", "forbidden-name", "`__import__` is not allowed"),
    ("def transform(batch):\n    return getattr(batch, '__class__')\n", "dunder", "getattr(..., '__class__')"),
    ("N = 0\ndef transform(batch):\n    global N\n    return batch\n", "scope", "line 3, col 5: `global` is not allowed"),
    ("def transform(rows, extra):\n    return rows\n", "entry-point", "signature must be exactly `def transform(batch)`"),
    ("def run(batch):\n    return batch\n", "entry-point", "no top-level `def transform(batch)`"),
])
def test_rules_reject(code, rule, fragment):
    findings = check_transform_code(code)
    hit = [f for f in findings if f.rule == rule]
    assert hit and fragment in hit[0].message, findings


def test_rules_report_syntax_error_position():
    [f] = check_transform_code("def transform(batch):\n    return [\n")
    assert f.rule == "python-syntax" and f.message.startswith("syntax error at line 2")


def test_rules_report_restricted_python_errors():
    findings = check_transform_code("def transform(batch):\n    batch[0] += 1\n    return batch\n")
    assert [f.rule for f in findings] == ["restricted-python"]
    assert "Line 2" in findings[0].message


# ---------------------------------------------------------------- sandbox: good code


def test_good_transform_lowercases_emails():
    res = run_transform(GOOD, ROWS)
    assert res.ok, res.error
    assert [r["email"] for r in res.rows] == ["alice@example.com", "bob@example.com"]
    assert res.duration_ms > 0


def test_generator_and_rich_types_round_trip():
    code = src("""
        import decimal, datetime, hashlib
        def transform(batch):
            for row in batch:
                yield {
                    "id": row["id"],
                    "total": row["amount"] * decimal.Decimal("2"),
                    "next_day": row["ts"] + datetime.timedelta(days=1),
                    "day": datetime.datetime.strptime("2024-05-01", "%Y-%m-%d").date(),
                    "h": hashlib.sha256(str(row["id"]).encode()).hexdigest()[:8],
                }
    """)
    rows = [{"id": 7, "amount": decimal.Decimal("1.25"), "ts": dt.datetime(2024, 1, 31, 12)}]
    res = run_transform(code, rows)
    assert res.ok, res.error
    out = res.rows[0]
    assert out["total"] == decimal.Decimal("2.50")
    assert out["next_day"] == dt.datetime(2024, 2, 1, 12)
    assert out["day"] == dt.date(2024, 5, 1)
    assert len(out["h"]) == 8


# ---------------------------------------------------------------- sandbox: failures


def test_user_exception_reports_class_message_and_line():
    code = "def transform(batch):\n    x = 1\n    return [{'a': x / 0}]\n"
    res = run_transform(code, ROWS)
    assert not res.ok
    assert res.error == "ZeroDivisionError: division by zero (line 3)"


def test_infinite_loop_is_killed_by_timeout():
    res = run_transform("def transform(batch):\n    while True:\n        pass\n", ROWS, timeout_s=1, cpu_s=30)
    assert not res.ok
    assert res.error == "timed out after 1 s"
    assert res.duration_ms < 5000


def test_cpu_limit_stops_busy_loop():
    res = run_transform("def transform(batch):\n    while True:\n        pass\n", ROWS, timeout_s=20, cpu_s=1)
    assert not res.ok
    assert res.error.startswith("CPU time limit exceeded (1 s)")


def test_memory_bomb_fails_with_memory_error():
    res = run_transform("def transform(batch):\n    x = 'a' * 10**9\n    return batch\n", ROWS, memory_mb=256)
    assert not res.ok
    assert res.error.startswith("memory limit exceeded"), res.error


def test_opening_a_socket_is_refused():
    code = "import socket\ndef transform(batch):\n    socket.socket().connect(('1.1.1.1', 53))\n    return batch\n"
    res = run_transform(code, ROWS)
    assert not res.ok
    assert "network access is not allowed" in res.error


def test_open_etc_passwd_fails():
    res = run_transform("def transform(batch):\n    return [{'x': open('/etc/passwd').read()}]\n", ROWS)
    assert not res.ok
    assert res.error == "NameError: name 'open' is not defined (line 2)"


@pytest.mark.parametrize("module", ["os", "subprocess", "sys", "importlib", "ctypes"])
def test_child_cannot_import_dangerous_modules(module):
    res = run_transform(f"import {module}\ndef transform(batch):\n    return batch\n", ROWS)
    assert not res.ok
    assert res.error.startswith(f"ImportError: import of '{module}' is not allowed")


@pytest.mark.parametrize("expr", ["statistics.sys", "datetime.sys", "collections.abc.sys", "string.Formatter"])
def test_allowed_modules_do_not_leak_submodules(expr):
    code = f"import statistics, datetime, collections, string\ndef transform(batch):\n    return [{{'x': str({expr})}}]\n"
    res = run_transform(code, ROWS)
    assert not res.ok
    assert "AttributeError" in res.error and "in the sandbox" in res.error


def test_dunder_escape_is_refused_at_compile_time():
    res = run_transform("def transform(batch):\n    return [{'x': str(().__class__.__base__)}]\n", ROWS)
    assert not res.ok
    assert res.error.startswith("restricted compile failed: Line 2")


def test_print_does_not_corrupt_the_reply():
    res = run_transform("def transform(batch):\n    print('noise')\n    return batch\n", ROWS)
    assert res.ok and res.rows == ROWS


@pytest.mark.parametrize("code, fragment", [
    ("def transform(batch):\n    return 5\n", "must return a list of dicts"),
    ("def transform(batch):\n    return [1, 2]\n", "output item 0 is int"),
    ("def transform(batch):\n    return [{'a': {1, 2}}, {1: 2}]\n", "column name 1 is not a string"),
    ("x = 1\n", "does not define transform(batch)"),
])
def test_bad_output_is_reported(code, fragment):
    res = run_transform(code, ROWS)
    assert not res.ok and fragment in res.error


# ---------------------------------------------------------------- network isolation layers


def _child_python(code: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          cwd=str(PROJECT_ROOT), env=_child_env())


def test_socket_patch_layer_refuses_sockets():
    code = ("from services.agents.qa.sandbox_child import block_network\n"
            "block_network()\nimport socket\n"
            "try:\n    socket.create_connection(('127.0.0.1', 9))\nexcept PermissionError as e:\n    print(e)\n")
    assert _child_python(code).stdout.strip() == "network access is not allowed"


def test_limits_layer_leaves_no_fd_for_a_socket():
    code = ("import _socket\nfrom services.agents.qa.sandbox_child import apply_limits\n"
            "apply_limits(256, 5)\n"
            "try:\n    _socket.socket()\nexcept OSError as e:\n    print(e.errno)\n")
    import errno
    assert _child_python(code).stdout.strip() == str(errno.EMFILE)


def test_network_namespace_has_no_route():
    prefix = network_isolation_prefix()
    if not prefix:
        pytest.skip("unshare --net is not permitted here; socket patch and RLIMIT_NOFILE still apply")
    code = ("import socket\nprint(sorted(n for _, n in socket.if_nameindex()))\n"
            "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\nexcept OSError as e:\n    print('refused', e.errno)\n")
    out = _child_python(code, prefix).stdout.splitlines()
    assert out[0] == "['lo']"
    assert out[1].startswith("refused")


def test_child_environment_carries_no_secrets(monkeypatch):
    monkeypatch.setenv("AIETL_SECRET_TOKEN", "s3cr3t")
    assert "AIETL_SECRET_TOKEN" not in _child_env()
