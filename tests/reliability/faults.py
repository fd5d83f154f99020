"""Shared by the fault tests that restart a server of the stack: stop one server `aietl up` started, start it
again the way `aietl up` does (infra.stack), and talk to the gateway the way a patient client would (a 503
while a server is away is answered by trying again later; anything else is the answer)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import httpx

from infra.stack import components, up


def component(settings, name: str):
    return next(c for c in components(settings, log=lambda _: None) if c.name == name)


def stop_server(settings, name: str) -> float:
    """Stop the stack's server ``name`` (it must be ours); returns when it is gone."""
    c = component(settings, name)
    pid = c.running_pid()
    assert pid, f"{name} was not started by `aietl up`: the test cannot restart it"
    t0 = time.monotonic()
    assert c.stop(pid), f"{name} (pid {pid}) did not stop"
    return time.monotonic() - t0


def start_servers(settings) -> None:
    """`aietl up` again: starts what is down, waits until every server is healthy."""
    rows = up(settings, log=lambda _: None)
    assert all(r.healthy for r in rows), rows


@contextmanager
def server_down(settings, name: str, pause_s: float = 1.0) -> Iterator[None]:
    """``name`` is stopped inside the block (at least ``pause_s``) and started again when it ends."""
    stop_server(settings, name)
    try:
        time.sleep(pause_s)
        yield
    finally:
        start_servers(settings)


def restart_server(settings, name: str, pause_s: float = 1.0) -> float:
    """Stop and start ``name``; returns the seconds it was away."""
    t0 = time.monotonic()
    with server_down(settings, name, pause_s):
        pass
    return time.monotonic() - t0


class Patient:
    """Counts what a client saw: every attempt, 503s (tried again), transport errors (tried again only where
    that cannot duplicate anything: reads), and any other 5xx (a bug: recorded, never retried)."""

    def __init__(self, http: httpx.Client):
        self.http = http
        self.attempts = 0
        self.unavailable = 0
        self.transport_errors = 0
        self.server_errors: list[tuple[str, int, str]] = []

    def request(self, method: str, path: str, timeout: float = 120, retry_transport: bool = False, **kw):
        deadline = time.monotonic() + timeout
        while True:
            self.attempts += 1
            try:
                r = self.http.request(method, path, **kw)
            except httpx.TransportError:
                self.transport_errors += 1
                if not retry_transport or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            if r.status_code == 503 and time.monotonic() < deadline:
                self.unavailable += 1
                time.sleep(min(float(r.headers.get("retry-after", 1)), 1.0))
                continue
            if r.status_code >= 500:
                self.server_errors.append((f"{method} {path}", r.status_code, r.text[:300]))
            return r

    def get(self, path: str, **kw):
        return self.request("GET", path, retry_transport=True, **kw)

    def post(self, path: str, **kw):
        return self.request("POST", path, **kw)
