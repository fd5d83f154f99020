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


DATA_SERVICES = ("kafka", "clickhouse", "redis", "postgres", "qdrant")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_only_the_gateway_is_published_and_only_on_loopback_by_default():
    published = {name: svc["ports"] for name, svc in _services().items() if svc.get("ports")}
    assert set(published) == {"gateway"}, published
    assert published["gateway"] == ["${AIETL_GATEWAY_BIND:-127.0.0.1}:8000:8000"]


def test_data_services_live_on_the_internal_network_only():
    compose = _compose()
    assert compose["networks"]["backend"].get("internal") is True
    for name in DATA_SERVICES:
        assert compose["services"][name].get("networks") == ["backend"], name


def test_every_password_comes_from_the_env_file_and_is_required():
    text = (ROOT / "docker-compose.yml").read_text()
    env = _compose()["x-aietl-env"]
    for var in ("AIETL_POSTGRES_PASSWORD", "AIETL_CLICKHOUSE_PASSWORD", "AIETL_QDRANT_API_KEY", "AIETL_SECRET_KEY"):
        assert env[var].startswith("${" + var + ":?"), (var, env[var])
    assert env["AIETL_REDIS_URL"].startswith("redis://:${AIETL_REDIS_PASSWORD:?")
    assert "CLICKHOUSE_SKIP_USER_SETUP" not in text and "POSTGRES_PASSWORD: aietl" not in text
    example = (ROOT / ".env.example").read_text()
    for var in ("AIETL_POSTGRES_PASSWORD", "AIETL_CLICKHOUSE_PASSWORD", "AIETL_REDIS_PASSWORD",
                "AIETL_QDRANT_API_KEY", "AIETL_SECRET_KEY"):
        assert f"\n{var}=\n" in example, var  # named, and left empty: no shared default password
