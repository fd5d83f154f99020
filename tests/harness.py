"""Test deployments: the real stack, with a topic prefix and gateway port of their own.

One Kafka/Redis/ClickHouse/PostgreSQL stack serves the whole session; each deployment gets a unique
topic prefix (hence its own topics, consumer groups and Redis namespace) and is a tenant of its own, so
tests cannot collide. On start it gets an admin API key of its tenant: ``dep.client()`` sends it,
``dep.auth_headers`` is it as headers, ``dep.new_key(role)`` makes more (all removed with the deployment).
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.core.settings import Settings
from services.processes import run_dir, settings_env, spawn, start_all, stop_all

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_prefix(tag: str) -> str:
    from tests.support.cleanup import PREFIXES

    prefix = f"t{uuid.uuid4().hex[:8]}-{tag}."
    PREFIXES.add(prefix)  # whatever the test leaves under it is removed at the end of the session
    return prefix


def prepare_topics(settings: Settings) -> None:
    from services.core.avro import SchemaCatalog
    from services.core.kafka import publish_schemas, super_admin_client
    from topology.acls import setup_bus
    from topology.model import load_topology
    from topology.ops import apply

    admin = super_admin_client(settings)
    apply(load_topology(), admin, settings.topic_prefix, log=lambda _: None)
    # The processors' ACLs on this deployment's prefix (removed with its topics: tests/support/cleanup.py).
    setup_bus(settings, load_topology(), admin, log=lambda _: None)
    publish_schemas(settings, SchemaCatalog())


@dataclass
class Deployment:
    settings: Settings
    workers: list[str] = field(default_factory=list)
    admin_key: str = ""
    key_prefixes: list[str] = field(default_factory=list)

    @property
    def api_key(self) -> str:
        """The deployment's admin key, made on start (or on first use, for a gateway started by hand)."""
        if not self.admin_key:
            self.admin_key = self.new_key("admin")
        return self.admin_key

    @property
    def tenant(self) -> str:
        return self.settings.tenant_id

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _key_store(self):
        from services.identity.keys import build_store

        return build_store(self.settings)

    def new_key(self, role: str, tenant: str | None = None, expires_in: str | None = None) -> str:
        """A fresh API key (straight into the key store, no CLI: fast); removed with the deployment."""
        key, info = self._key_store().create(tenant or self.tenant, role, name="test", expires_in=expires_in,
                                             created_by="tests.harness")
        self.key_prefixes.append(info.prefix)
        return key

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def start(self) -> "Deployment":
        prepare_topics(self.settings)
        self.admin_key = self.admin_key or self.new_key("admin")
        try:
            start_all(self.settings, self.workers, log=lambda _: None)
        except BaseException:  # a fixture that fails to start never tears down: stop what did start
            stop_all(self.settings, log=lambda _: None)
            raise
        return self

    def start_worker(self, name: str, **overrides) -> int:
        """Start (or restart) one worker, optionally with different settings (e.g. a fault point)."""
        return spawn(self.settings.model_copy(update=overrides), name, ["worker", name])

    def stop(self) -> None:
        stop_all(self.settings, log=lambda _: None)

    def remove(self) -> None:
        """Stop, then delete the deployment's topics, consumer groups and Redis keys."""
        from tests.support.cleanup import PREFIXES, remove_prefix_leftovers

        self.stop()
        remove_prefix_leftovers(self.settings, [self.settings.topic_prefix])
        self._key_store().delete(self.key_prefixes)  # keys of other tenants it made (its own are gone)
        self.key_prefixes.clear()
        self.admin_key = ""
        PREFIXES.discard(self.settings.topic_prefix)

    def log(self, name: str) -> str:
        path = run_dir(self.settings) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**settings_env(self.settings), "AIETL_API_KEY": self.api_key}  # CLI commands calling the gateway
        return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def client(self, key: str | None = None, timeout: float = 10, **kwargs) -> httpx.Client:
        """An HTTP client of the gateway sending the deployment's admin key (or ``key``; "" sends none)."""
        key = self.api_key if key is None else key
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers, **kwargs)


# Tests poll the gateway tightly, all with their deployment's one admin key: a per-principal limit well above
# the production default (25/s, burst 600), which tests/security/test_authz.py checks with small values.
TEST_RATE_LIMITS = {"rate_limit_per_s": 500.0, "rate_limit_burst": 10_000}
# The test data sets' topics on the stack's broker, shared with pipelines as an admin would share them
# (AIETL_KAFKA_SHARED_TOPICS; nothing is shared by default).
TEST_SHARED_TOPICS = "shop.*,clinic.*"


def new_deployment(base: Settings, tag: str, workers: list[str], **overrides) -> Deployment:
    prefix = unique_prefix(tag)
    # Its own tenant too: connections, keys and other per-tenant state cannot collide across deployments.
    settings = base.model_copy(update={"topic_prefix": prefix, "gateway_port": free_port(),
                                       "tenant_id": prefix.rstrip("."), **TEST_RATE_LIMITS,
                                       "kafka_shared_topics": base.kafka_shared_topics or TEST_SHARED_TOPICS,
                                       **overrides})
    return Deployment(settings, workers)


def wait_for(fn, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
