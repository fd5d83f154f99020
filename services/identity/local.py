"""The local operator's API key: what `make run` (``aietl start`` and ``aietl demo``) uses and prints.

``AIETL_API_KEY`` wins when set. Otherwise the key stored in ``<state_dir>/api_key`` (0600) is reused while it
is still valid for the local tenant as an admin; if it is missing, revoked, expired or of another tenant, a new
admin key is created straight in the key store (no key is needed to make the first one) and stored there.
"""
from __future__ import annotations

import os
from pathlib import Path
from services.identity import InvalidCredentials

ENV = "AIETL_API_KEY"
FILE = "api_key"


def key_file(settings) -> Path:
    return Path(settings.state_dir) / FILE


def _valid(store, key: str, tenant: str) -> bool:
    try:
        principal = store.verify(key)
    except InvalidCredentials:
        return False
    return principal.tenant == tenant and principal.role == "admin"


def ensure_local_key(settings, store=None) -> tuple[str, bool]:
    """(key, created): AIETL_API_KEY if set, else a valid stored admin key of the local tenant, else a new one."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return env, False
    if store is None:
        from services.identity.keys import build_store

        store = build_store(settings)
    path = key_file(settings)
    stored = path.read_text().strip() if path.exists() else ""
    if stored and _valid(store, stored, settings.tenant_id):
        return stored, False
    key, _info = store.create(settings.tenant_id, "admin", name="local admin (aietl start)", created_by="aietl start")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.replace(tmp, path)
    return key, True


__all__ = ["ENV", "ensure_local_key", "key_file"]
