"""docker-compose.yml runs what `aietl start` runs: every worker of services/runtime.py and the gateway."""
from pathlib import Path

import yaml

from services.runtime import WORKERS

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_every_worker_and_the_gateway():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {tuple(s.get("command") or ())[:2] for s in services.values()}
    assert {("worker", name) for name in WORKERS} <= commands
    assert any(c and c[0] == "gateway" for c in commands)
