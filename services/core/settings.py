"""Runtime settings, read from the environment (prefix ``AIETL_``) or a ``.env`` file.

Nothing here runs at import time: the composition root calls :func:`load_settings` once and passes the
object down.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIETL_", env_file=".env", extra="ignore")

    # Where the local stack keeps jars, data, logs and pid files (git-ignored).
    state_dir: Path = Field(default=REPO_ROOT / ".aietl")
    topic_prefix: str = "aietl."
    tenant_id: str = "default"

    # Kafka: an external cluster (nothing started), an unpacked KAFKA_HOME, or jars resolved by Maven.
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    kafka_external: bool = False
    kafka_home: Optional[Path] = Field(default=None, validation_alias="KAFKA_HOME")
    kafka_heap: str = "768m"
    schema_registry_url: Optional[str] = None

    redis_url: str = "redis://127.0.0.1:6379/0"

    clickhouse_host: str = "127.0.0.1"
    clickhouse_port: int = 9000
    clickhouse_http_port: int = 8123
    clickhouse_user: str = "default"
    clickhouse_password: str = ""
    clickhouse_database: str = "aietl"

    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "aietl"
    postgres_password: str = "aietl"
    postgres_db: str = "aietl"

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000

    # Which stack components `aietl up` manages; an empty value skips a component.
    manage_os_services: bool = True

    # Test hook: name of a point at which a worker kills itself with SIGKILL (see services.core.faults).
    fault_point: Optional[str] = None
    log_level: str = "info"

    @property
    def postgres_dsn(self) -> str:
        return (f"postgresql://{self.postgres_user}:{self.postgres_password}@{self.postgres_host}:"
                f"{self.postgres_port}/{self.postgres_db}")

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``pipelines.events.v1``."""
        return f"{self.topic_prefix}{name}"


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
