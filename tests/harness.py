"""Test deployments: the real stack, with a topic prefix and gateway port of their own.

One Kafka/Redis/ClickHouse/PostgreSQL stack serves the whole session; each deployment gets a unique
topic prefix (hence its own topics, consumer groups and Redis namespace), so tests cannot collide.
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

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def start(self) -> "Deployment":
        prepare_topics(self.settings)
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
        PREFIXES.discard(self.settings.topic_prefix)

    def log(self, name: str) -> str:
        path = run_dir(self.settings) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli", *args], env=settings_env(self.settings),
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10)


def new_deployment(base: Settings, tag: str, workers: list[str]) -> Deployment:
    prefix = unique_prefix(tag)
    # Its own tenant too: connections and other per-tenant state cannot collide across deployments.
    settings = base.model_copy(update={"topic_prefix": prefix, "gateway_port": free_port(),
                                       "tenant_id": prefix.rstrip(".")})
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
