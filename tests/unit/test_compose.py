"""docker-compose.yml runs what `aietl start` runs: every worker of services/runtime.py and the gateway,
each restarted by Docker when it crashes and health-checked with `aietl probe`."""
from pathlib import Path

import yaml

from services.runtime import WORKERS

ROOT = Path(__file__).resolve().parents[2]


def _services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_compose_runs_every_worker_and_the_gateway():
    commands = {tuple(s.get("command") or ())[:2] for s in _services().values()}
    assert {("worker", name) for name in WORKERS} <= commands
    assert any(c and c[0] == "gateway" for c in commands)


def test_every_worker_and_the_gateway_restarts_and_is_health_checked():
    for name, svc in _services().items():
        command = svc.get("command") or []
        if not command or command[0] not in ("worker", "gateway"):
            continue
        process = command[1] if command[0] == "worker" else "gateway"
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name
        check = svc.get("healthcheck") or {}
        assert check.get("test") == ["CMD", "aietl", "probe", process], (name, check)
        assert check.get("interval") and check.get("retries"), (name, check)
