"""Passwords of the local stack's own servers (Redis, ClickHouse, PostgreSQL), so that nothing that
merely reaches a port on this machine can read the read model, the analytics tables or the platform's
PostgreSQL schema.

`aietl up` generates one random secret into ``<state_dir>/stack.secret`` (0600, never in git); each
server's password is an HMAC of it and the server's name, so the servers (configured by infra/) and every
process (through :class:`~services.core.settings.Settings`) agree without passing passwords around, as
the Kafka bus does with its own secret (services/core/kafka_auth.py). A password set explicitly (an
``AIETL_*`` variable, ``.env``, an external server) always wins (for Redis: a URL with a password or a
host that is not this machine); without the secret file nothing changes.

Redis has one ACL user per role of process (:data:`REDIS_ROLES`), each with its own derived password and
only the keys, channels and commands that role uses; ``default`` is the operator's (`aietl up`, the CLI,
tests) and carries the stack's Redis password. A process's role follows from who it is on the bus
(``kafka_principal``: `aietl worker NAME`, `aietl gateway`); a process that does not use Redis gets no
Redis credentials at all. The roles confine mistakes and a hijacked code path (the gateway cannot rewrite
the read model or FLUSHALL), not another program running as the same OS user: that one can read the
secret, as it can read the bus's.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urlparse, urlunparse

SECRET_FILE = "stack.secret"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def secret_path(state_dir: Path) -> Path:
    return Path(state_dir) / SECRET_FILE


def ensure_secret(state_dir: Path) -> None:
    """Generate the secret once (only `aietl up` calls this)."""
    path = secret_path(state_dir)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `up` won the race
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def password(state_dir: Path, server: str) -> Optional[str]:
    """The derived password of ``server``, or None when this state dir has no secret yet."""
    path = secret_path(state_dir)
    try:
        secret = path.read_text().strip().encode()
    except FileNotFoundError:
        return None
    return hmac.new(secret, f"stack:{server}".encode(), hashlib.sha256).hexdigest()[:40]


def with_password(url: str, pw: str) -> str:
    """``url`` with ``pw`` as its password, unless it already carries one."""
    parts = urlparse(url)
    if parts.password or not parts.hostname:
        return url
    user = quote(parts.username or "", safe="")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunparse(parts._replace(netloc=f"{user}:{quote(pw, safe='')}@{host}"))


# Key patterns match every deployment's topic prefix (tests share one Redis under their own prefixes):
# read model `{prefix}rm:...` (services/projector/readmodel.py), the gateway's counters `{prefix}rm:limit:`
# and replay guards `{prefix}rm:hook:`, leases `{prefix}executor:lease:`, the router's `{prefix}llm:`
# (and the unscoped default `aietl:llm:`), the catalog cache `{prefix}catalog:`. `%R~` is read-only.
_MODEL = ("*rm:pipeline:*", "*rm:tenant:*", "*rm:run:*")
_LIVE = "&*rm:pipeline:*:live &*rm:run:*:live"
# Data commands only (TIME: the rate-limit scripts read the clock); -@dangerous takes FLUSHALL/FLUSHDB,
# KEYS, CONFIG, DEBUG, SHUTDOWN, ACL, MIGRATE ...
_COMMANDS = "-@all +@read +@write +@transaction +@scripting +@connection +time -@dangerous"
REDIS_ROLES: dict[str, str] = {
    "gateway": " ".join([*(f"%R~{k}" for k in _MODEL), "~*rm:limit:*", "~*rm:hook:*", "~*catalog:*",
                         "%R~*llm:*", _LIVE, _COMMANDS, "+subscribe +unsubscribe +psubscribe +punsubscribe"]),
    "projector": " ".join([*(f"~{k}" for k in _MODEL), "~*rm:offsets", "~*rm:replaying", _LIVE, _COMMANDS,
                           "+publish"]),
    "executor": f"~*executor:lease:* {_COMMANDS}",
    "router": f"~*llm:* {_COMMANDS}",
    "catalog": f"~*catalog:* {_COMMANDS}",
}
# Processes by their bus principal; "admin" (CLI, supervisor, tests) is the default user. Absent: no Redis.
ROLE_OF_PRINCIPAL = {"gateway": "gateway", "projector": "projector", "executor": "executor",
                     "llm-router": "router", "planner": "catalog", "admin": "default"}


def redis_role_password(state_dir: Path, role: str) -> Optional[str]:
    return password(state_dir, "redis" if role == "default" else f"redis:{role}")


def redis_acl(state_dir: Path) -> list[tuple[str, str]]:
    """(user, rules) for every role user, passwords included (``>pw``); empty without the secret."""
    out = []
    for role, rules in REDIS_ROLES.items():
        pw = redis_role_password(state_dir, role)
        if pw:
            out.append((role, f"on resetpass >{pw} resetkeys resetchannels {rules}"))
    return out


def _redis_role_url(state_dir: Path, url: str, principal: str) -> str:
    role = ROLE_OF_PRINCIPAL.get(principal)
    if role is None:
        return url  # this process does not use Redis: no credentials to lose
    pw = redis_role_password(state_dir, role)
    if not pw:
        return url
    parts = urlparse(url)
    if role != "default":
        parts = parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}")
    return with_password(urlunparse(parts), pw)


def local_overrides(state_dir: Path, explicit: set[str], current: dict) -> dict:
    """The settings fields to fill with derived passwords."""
    out: dict = {}
    # Redis's port lives in its URL, so a URL naming another port is still the local server: it gets a
    # password when it names a loopback host and carries none; its user is this process's role (a user
    # named in the URL is kept, with the stack's password as before).
    url = urlparse(current["redis_url"])
    if url.hostname in LOOPBACK and not url.password and (pw := password(state_dir, "redis")):
        out["redis_url"] = (with_password(current["redis_url"], pw) if url.username else
                            _redis_role_url(state_dir, current["redis_url"], current.get("principal", "admin")))
    if "clickhouse_password" not in explicit and (pw := password(state_dir, "clickhouse")):
        out["clickhouse_password"] = pw
    if "postgres_password" not in explicit and (pw := password(state_dir, "postgres")):
        out["postgres_password"] = pw
    for field, server in (("clickhouse_demo_password", "clickhouse:demo"), ("postgres_demo_password", "postgres:demo")):
        if field not in explicit and (pw := password(state_dir, server)):
            out[field] = pw
    return out
