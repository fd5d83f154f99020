"""Who is calling: principals, roles and the one permission table, API keys and optional JWT bearer tokens.

A :class:`Principal` is what the gateway acts for: its tenant (the only tenant a request may touch), its role
and a subject used as the actor of commands. Keys live in :mod:`services.identity.keys`, JWTs in
:mod:`services.identity.tokens`; nothing here touches the network at import time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

ROLES = ("viewer", "editor", "admin")

# The one permission table: permission -> lowest role that holds it. Roles are ordered, so an admin holds
# everything an editor holds, an editor everything a viewer holds. Routers name a permission, never a role.
PERMISSIONS: dict[str, str] = {
    "pipelines.read": "viewer",      # state, list, events, SSE, versions, artifacts, runs
    "catalog.read": "viewer",
    "connections.read": "viewer",    # names, kinds and params; secrets are never shown
    "llm.read": "viewer",            # the caller's tenant's LLM stats
    "pipelines.write": "editor",     # draft, revise, answer, deploy, run, cancel, pause, resume, delete
    "catalog.write": "editor",
    "connections.write": "admin",    # create, test, introspect, delete
    "keys.manage": "admin",
    "webhooks.secret": "admin",      # read and rotate a pipeline's webhook secret
    "audit.read": "admin",
    "llm.read_global": "admin",      # stats across tenants (only for the admin's own deployment)
}


class IdentityError(Exception):
    """A credential problem a caller can cause; ``status`` maps it to HTTP (401 unless said otherwise)."""

    status = 401
    title = "Unauthorized"


class InvalidCredentials(IdentityError):
    pass


class InvalidKeyRequest(IdentityError):
    status, title = 422, "Invalid key request"


class KeyNotFound(IdentityError):
    status, title = 404, "Key not found"


class IdentityUnavailable(IdentityError):
    status, title = 503, "Identity store unavailable"


@dataclass(frozen=True)
class Principal:
    tenant: str
    role: str
    subject: str
    key_id: Optional[str] = None

    def can(self, permission: str) -> bool:
        return allowed(self.role, permission)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidKeyRequest(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def allowed(role: str, permission: str) -> bool:
    """True when ``role`` holds ``permission``; an unknown permission is held by nobody (fail closed)."""
    need = PERMISSIONS.get(permission)
    if need is None or role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(need)


def permission_matrix() -> list[tuple[str, dict[str, bool]]]:
    """Rows of (permission, {role: held}) for docs and the check that docs/SECURITY.md matches the table."""
    return [(perm, {role: allowed(role, perm) for role in ROLES}) for perm in PERMISSIONS]


__all__ = ["PERMISSIONS", "ROLES", "IdentityError", "IdentityUnavailable", "InvalidCredentials",
           "InvalidKeyRequest", "KeyNotFound", "Principal", "allowed", "check_role", "permission_matrix"]
