"""Credentials on the Kafka bus: who a client is, and the librdkafka / Faust settings that say so.

Local stack: one SCRAM principal per topology processor (plus ``admin``, the super user of `aietl up`,
topology apply and the tests, and ``broker``/``controller``, the node's own). Each password is an HMAC of
one random secret generated once into ``<state_dir>/kafka/bus.secret`` (0600, never in git) and the
principal's name: adding a processor needs no new file, and the broker, `topology apply` (which creates
the SCRAM users) and every process agree without passing passwords around. The ACLs, not the passwords,
are what keep one processor out of another's topics (topology/acls.py).

External cluster (``kafka_external``): the explicit ``kafka_sasl_username``/``kafka_sasl_password`` and
TLS files from the settings; that cluster's operator owns its principals and ACLs.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any, Optional

from services.core.settings import Settings

ADMIN = "admin"
BROKER = "broker"
CONTROLLER = "controller"
SECRET_FILE = "bus.secret"


class BusCredentialsError(RuntimeError):
    """The local bus secret is missing: the broker was never started with SASL from this state dir."""


def secret_path(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / SECRET_FILE


def ensure_secret(settings: Settings) -> bytes:
    """The bus secret, generated once (0600). Only the broker's start calls this."""
    path = secret_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


def password(settings: Settings, principal: str) -> str:
    path = secret_path(settings)
    if not path.exists():
        raise BusCredentialsError(f"{path} is missing: the local Kafka has no credentials yet; run `aietl up`")
    return hmac.new(path.read_text().strip().encode(), f"kafka:{principal}".encode(), hashlib.sha256).hexdigest()


def uses_sasl(settings: Settings) -> bool:
    return security_protocol(settings).startswith("SASL_")


def security_protocol(settings: Settings) -> str:
    if settings.kafka_security_protocol:
        return settings.kafka_security_protocol.upper()
    if settings.kafka_external:
        return "SASL_PLAINTEXT" if settings.kafka_sasl_username else "PLAINTEXT"
    return "SASL_PLAINTEXT"


def identity(settings: Settings, principal: Optional[str] = None) -> tuple[str, str]:
    """(username, password) this client authenticates with."""
    if settings.kafka_external or settings.kafka_sasl_username:
        return settings.kafka_sasl_username or "", settings.kafka_sasl_password or ""
    name = principal or settings.kafka_principal
    return name, password(settings, name)


def client_conf(settings: Settings, principal: Optional[str] = None) -> dict[str, Any]:
    """librdkafka settings (confluent-kafka) for ``principal`` (default: ``settings.kafka_principal``)."""
    proto = security_protocol(settings)
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap, "security.protocol": proto}
    if proto.startswith("SASL_"):
        user, pw = identity(settings, principal)
        conf.update({"sasl.mechanism": settings.kafka_sasl_mechanism, "sasl.username": user,
                     "sasl.password": pw})
    if proto.endswith("SSL"):
        for key, value in (("ssl.ca.location", settings.kafka_ssl_ca_file),
                           ("ssl.certificate.location", settings.kafka_ssl_cert_file),
                           ("ssl.key.location", settings.kafka_ssl_key_file)):
            if value:
                conf[key] = str(value)
    return conf


def faust_credentials(settings: Settings, principal: Optional[str] = None):
    """Faust/aiokafka ``broker_credentials`` for the same identity (None: plaintext)."""
    import faust

    proto = security_protocol(settings)
    ssl_context = None
    if proto.endswith("SSL"):
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None)
        if settings.kafka_ssl_cert_file:
            ssl_context.load_cert_chain(str(settings.kafka_ssl_cert_file),
                                        str(settings.kafka_ssl_key_file) if settings.kafka_ssl_key_file else None)
    if proto.startswith("SASL_"):
        user, pw = identity(settings, principal)
        return faust.SASLCredentials(username=user, password=pw, ssl_context=ssl_context,
                                     mechanism=settings.kafka_sasl_mechanism)
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None
