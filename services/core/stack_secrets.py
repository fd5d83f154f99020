"""Passwords of the local stack's own servers (Redis, ClickHouse, PostgreSQL), so that nothing that
merely reaches a port on this machine can read the read model, the analytics tables or the platform's
PostgreSQL schema.

`aietl up` generates one random secret into ``<state_dir>/stack.secret`` (0600, never in git); each
server's password is an HMAC of it and the server's name, so the servers (configured by infra/) and every
process (through :class:`~services.core.settings.Settings`) agree without passing passwords around, as
the Kafka bus does with its own secret (services/core/kafka_auth.py). A password set explicitly (an
``AIETL_*`` variable, ``.env``, an external server) always wins (for Redis: a URL with a password or a
host that is not this machine); without the secret file nothing changes.
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


def local_overrides(state_dir: Path, explicit: set[str], current: dict) -> dict:
    """The settings fields to fill with derived passwords."""
    out: dict = {}
    # Redis's port lives in its URL, so a URL naming another port is still the local server: it gets the
    # password when it names a loopback host and carries none.
    if urlparse(current["redis_url"]).hostname in LOOPBACK and (pw := password(state_dir, "redis")):
        out["redis_url"] = with_password(current["redis_url"], pw)
    if "clickhouse_password" not in explicit and (pw := password(state_dir, "clickhouse")):
        out["clickhouse_password"] = pw
    if "postgres_password" not in explicit and (pw := password(state_dir, "postgres")):
        out["postgres_password"] = pw
    return out
