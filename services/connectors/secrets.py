"""Connection secrets, encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``).

The key comes from ``AIETL_SECRET_KEY`` (settings.secret_key) or, when unset, from ``<state_dir>/secret.key``,
generated once with 0600 permissions. ``AIETL_SECRET_KEY`` may hold several comma-separated keys: the first
encrypts, all decrypt, so a key can be rotated without losing the stored connections.

Each token binds its plaintext to the tenant and connection name, so a ciphertext copied onto another row
(another tenant's connection) does not decrypt there.
"""
from __future__ import annotations

import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"
MASK = "***set***"
# Parameter names that are secrets: they must go in `secrets`, never in plaintext `params`.
SECRET_NAMES = frozenset({"password", "passwd", "api_key", "apikey", "token", "access_token", "secret",
                          "client_secret", "headers", "sasl_password", "private_key", "authorization"})


class SecretsError(Exception):
    """The secret key is missing, malformed or does not match the stored ciphertexts."""

    status = 500
    title = "Connection secrets unavailable"


def _fernet(keys: list[bytes]):
    from cryptography.fernet import Fernet, MultiFernet  # imported here: no work at import time

    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError):
        raise SecretsError(
            "AIETL_SECRET_KEY must be a Fernet key (32 url-safe base64-encoded bytes), or several separated "
            "by commas; generate one with: python -c \"from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())\"") from None


class SecretCipher:
    """Encrypts and decrypts one connection's secrets (a dict) bound to its tenant and name."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise SecretsError("no secret key given")
        self._fernet = _fernet(keys)

    def __repr__(self) -> str:  # never show key material
        return "SecretCipher(<keys hidden>)"

    def encrypt(self, tenant: str, name: str, secrets: dict[str, Any]) -> bytes:
        plain = json.dumps({"t": tenant, "n": name, "s": secrets}, separators=(",", ":"), sort_keys=True)
        return self._fernet.encrypt(plain.encode())

    def decrypt(self, tenant: str, name: str, token: bytes) -> dict[str, Any]:
        from cryptography.fernet import InvalidToken

        try:
            doc = json.loads(self._fernet.decrypt(bytes(token)))
        except InvalidToken:
            raise SecretsError(f"cannot decrypt the secrets of connection {name!r}: the secret key is not the "
                               "one they were encrypted with (check AIETL_SECRET_KEY / secret.key)") from None
        if doc.get("t") != tenant or doc.get("n") != name:
            raise SecretsError(f"the stored secrets of connection {name!r} belong to another connection")
        return doc["s"]


def generate_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def load_or_create_key_file(state_dir: Path, name: str = KEY_FILE) -> bytes:
    """The key in ``<state_dir>/<name>`` (default secret.key), created (0600) the first time."""
    path = Path(state_dir) / name
    if not path.exists():
        _create_key_file(path)
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; run chmod 600 on it", path)
    key = path.read_text().strip().encode()
    if not key:
        raise SecretsError(f"{path} is empty; set AIETL_SECRET_KEY or restore the key file")
    return key


def _create_key_file(path: Path) -> None:
    # Written to a private temp file, then hard-linked into place: the link fails if another process won
    # the race, and nobody ever sees a half-written key (losing the key loses every stored secret).
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")  # unique per thread too
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(generate_key())
        os.link(tmp, path)
        log.info("generated a new secret key in %s", path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def parse_keys(value: str) -> list[bytes]:
    return [k.strip().encode() for k in value.split(",") if k.strip()]


def cipher_from_settings(settings) -> SecretCipher:
    """The cipher for ``settings``: AIETL_SECRET_KEY when set, else the generated key file."""
    configured: Optional[str] = getattr(settings, "secret_key", None) or os.environ.get("AIETL_SECRET_KEY")
    if configured:
        return SecretCipher(parse_keys(configured))
    return SecretCipher([load_or_create_key_file(settings.state_dir)])


def mask(secrets: dict[str, Any]) -> dict[str, str]:
    """What may be shown of secrets: their names, never their values."""
    return {k: MASK for k in sorted(secrets)}


# ---------------------------------------------------------------- secrets by shape (docs/SECURITY.md, item 5)
# A name list alone let `pwd`, `dsn: postgresql://u:p@h` and `auth: {password: ...}` through as plaintext.
# A param is secret-like when its NAME says so at any depth, or its VALUE looks like a credential.

_SECRET_WORD = re.compile(
    r"(^|[_\-.])(pass(word|wd|phrase)?|pwd|secrets?|tokens?|credentials?|creds|auth(orization)?|bearer|cookies?|"
    r"session|signature|(api|access|secret|private|client|auth|signing|encryption|master|account|service|sas)"
    r"[_\-]?keys?|apikey|keyfile|jwt|otp|pin)($|[_\-.])", re.I)
# Names of *where* a credential goes (a header name, a query-parameter name), not credentials themselves.
_NAME_OF_A_NAME = re.compile(r"[_\-](header|param|field|column|name|path|url|type|mechanism|protocol|id)s?$", re.I)
_SECRET_VALUES = (
    (re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@]*:[^/\s@]+@", re.I), "a URL with a password (scheme://user:pass@)"),
    (re.compile(r"\b(bearer|basic|token|digest)\s+[A-Za-z0-9._~+/=\-]{8,}", re.I), "an Authorization value"),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"), "a JSON web token"),
    (re.compile(r"\b(sk|rk|pk)[-_](live|test|proj|ant)?[-_]?[A-Za-z0-9_\-]{16,}"), "an API key"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key"),
    (re.compile(r"\b(ghp|gho|ghs|github_pat|xox[abpr]|glpat)[-_][A-Za-z0-9_\-]{10,}"), "an access token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"(^|[?&;\s])(password|passwd|pwd|token|api_?key|secret|access_token|sig)=[^&\s]+", re.I),
     "a credential in a query string"),
)


def secret_like_name(name: str) -> bool:
    name = str(name)
    return name.lower() in SECRET_NAMES | {"key", "keys"} or (bool(_SECRET_WORD.search(name))
                                             and not _NAME_OF_A_NAME.search(name))


def secret_like_value(value: str) -> Optional[str]:
    """What credential ``value`` looks like, else None."""
    for pattern, what in _SECRET_VALUES:
        if pattern.search(value):
            return what
    return None


def secret_paths(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(dotted path, why) of every secret-like entry in ``value`` (params), at any depth; never the value."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if secret_like_name(key) and item not in (None, "", [], {}) and not isinstance(item, bool):
                found.append((where, "its name says it is a secret"))
            else:
                found += secret_paths(item, where)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found += secret_paths(item, f"{path}[{i}]")
    elif isinstance(value, str):
        what = secret_like_value(value)
        if what:
            found.append((path, f"its value looks like {what}"))
    return found


def redact(value: Any) -> Any:
    """``value`` (params as stored) with every secret-like entry replaced by MASK: what a listing shows,
    even for rows registered before the shape check existed."""
    if isinstance(value, dict):
        return {k: (MASK if secret_like_name(k) and v not in (None, "", [], {}) and not isinstance(v, bool)
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str) and secret_like_value(value):
        return MASK
    return value
