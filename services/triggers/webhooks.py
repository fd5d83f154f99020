"""Signed webhooks: how a caller proves a POST to ``/api/v1/hooks/{hook_id}`` comes from someone holding
the hook's secret, and is fresh.

Pure functions, no I/O. A hook's secret is derived from the server's webhook key (its own key, not the one
that encrypts connection secrets), the hook id and the hook's generation, so it is never stored and cannot
leak from the read model; rotating one hook bumps its generation (the store is
:mod:`services.triggers.hook_store`), rotating the webhook key rotates every hook secret.

The caller signs ``"<timestamp>.<raw body>"`` with HMAC-SHA256 and sends::

    X-Aietl-Timestamp: <unix seconds>
    X-Aietl-Signature: sha256=<hex digest>

The timestamp is inside the signature, so an old delivery cannot be re-dated; the server refuses
timestamps more than ``window_s`` away from its clock and remembers accepted signatures for the rest of the
window (replay protection lives in the gateway, it needs Redis).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Optional, Sequence, Union

TIMESTAMP_HEADER = "X-Aietl-Timestamp"
SIGNATURE_HEADER = "X-Aietl-Signature"
SCHEME = "sha256="
DEFAULT_WINDOW_S = 300
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class WebhookError(Exception):
    """A webhook delivery failed verification; nothing may be done with it."""


class SignatureError(WebhookError):
    """The signature or timestamp header is missing, malformed or does not match the body."""


class StaleTimestampError(WebhookError):
    """The delivery is correctly signed but its timestamp is too far from the server's clock."""


def hook_secret(secret_key: str, hook_id: str, generation: int = 0) -> str:
    """The hook's signing secret: hex HMAC-SHA256 of ``"aietl-webhook:<hook_id>"`` (``:<generation>`` once
    rotated) under the webhook key."""
    if not secret_key:
        raise ValueError("a server secret key is needed to derive webhook secrets")
    message = f"aietl-webhook:{hook_id}" + (f":{generation}" if generation else "")
    return hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Aietl-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{int(timestamp)}.".encode() + bytes(body), hashlib.sha256)
    return SCHEME + digest.hexdigest()


def parse_timestamp(header: Optional[str]) -> int:
    if header is None or not header.strip():
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header (unix seconds)")
    value = header.strip()
    if not value.isascii() or not value.isdigit():
        raise SignatureError(f"{TIMESTAMP_HEADER} must be whole unix seconds, got {value[:40]!r}")
    return int(value)


def parse_signature(header: Optional[str]) -> str:
    """The canonical form ``sha256=<lower-case hex>``, so one signature has exactly one spelling."""
    if header is None or not header.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header ({SCHEME}<hex HMAC-SHA256>)")
    value = header.strip()
    if not value.lower().startswith(SCHEME) or not _HEX64.fullmatch(value[len(SCHEME):]):
        raise SignatureError(f"{SIGNATURE_HEADER} must look like {SCHEME}<64 hex digits>")
    return SCHEME + value[len(SCHEME):].lower()


def verify(secret: Union[str, Sequence[str]], timestamp_header: Optional[str], signature_header: Optional[str],
           body: bytes, now: float, window_s: int = DEFAULT_WINDOW_S) -> tuple[int, str]:
    """Check a delivery; returns ``(timestamp, canonical signature)`` or raises a :class:`WebhookError`.

    ``secret`` may be several secrets (e.g. derived from each server key during a key rotation); the
    delivery must match one. The signature is checked before the clock, so only a genuine sender learns
    that its clock (not its secret) is wrong.
    """
    timestamp = parse_timestamp(timestamp_header)
    signature = parse_signature(signature_header)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    # Every candidate is compared (no early exit) and with compare_digest: timing tells nothing.
    matched = False
    for candidate in secrets:
        matched |= hmac.compare_digest(sign(candidate, timestamp, body), signature)
    if not matched:
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body: sign \"<timestamp>.<raw body>\" "
                             "with HMAC-SHA256 and the hook's secret")
    skew = timestamp - int(now)
    if abs(skew) > window_s:
        when = "old" if skew < 0 else "in the future"
        raise StaleTimestampError(f"{TIMESTAMP_HEADER} is {abs(skew)} s {when}; deliveries must be signed "
                                  f"within ±{window_s} s of the server's clock (unix seconds)")
    return timestamp, signature
