"""Runtime settings, read from the environment (prefix ``AIETL_``) or a ``.env`` file.

Nothing here runs at import time: the composition root calls :func:`load_settings` once and passes the
object down.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field, PrivateAttr, model_validator
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
    # Who this process is on the bus: its topology processor name (set by `aietl worker`/`gateway`);
    # "admin" for the CLI, topology apply and tests. On the local stack the password is derived from the
    # secret in <state_dir>/kafka/ (services/core/kafka_auth.py); an external cluster takes the explicit
    # SASL username/password and TLS files below (protocol None: SASL_PLAINTEXT locally, PLAINTEXT external).
    kafka_principal: str = "admin"
    kafka_security_protocol: Optional[str] = None
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: Optional[str] = None
    kafka_sasl_password: Optional[str] = None
    kafka_ssl_ca_file: Optional[Path] = None
    kafka_ssl_cert_file: Optional[Path] = None
    kafka_ssl_key_file: Optional[Path] = None
    schema_registry_url: Optional[str] = None

    redis_url: str = "redis://127.0.0.1:6379/0"
    # (redis_url as configured, as derived with this process's role credentials): a child process is given
    # the former, so it derives its own role's and never inherits this one's (services/processes.py).
    _redis_url_derived: Optional[tuple[str, str]] = PrivateAttr(default=None)

    # Qdrant: a server URL when set; otherwise qdrant-client's local mode, on disk under qdrant_path or in
    # memory when that is unset too.
    qdrant_url: Optional[str] = None
    qdrant_path: Optional[Path] = None
    qdrant_api_key: Optional[str] = None

    # LLM router (services.llm_router). Providers: a JSON list of ProviderConfig objects
    # ([{"name", "kind", "model", "base_url", "api_key_env", "strengths", "cost_in_per_1k", ...}]);
    # unset means the offline builtin provider alone.
    llm_providers_json: Optional[str] = None
    llm_key_prefix: str = "aietl:llm:"
    llm_max_attempts: int = 3
    llm_backoff_base_s: float = 0.5
    llm_backoff_max_s: float = 8.0
    llm_retry_after_cap_s: float = 30.0
    llm_breaker_failures: int = 5
    llm_breaker_cooldown_s: float = 30.0
    llm_exact_cache_ttl_s: int = 7 * 86400
    llm_semantic_cache: bool = True
    llm_semantic_cache_ttl_s: int = 7 * 86400
    # Per-tenant limits (unset = unlimited); llm_tenant_limits_json overrides per tenant:
    # {"acme": {"rpm": 60, "tpm": 100000, "daily_usd": 5.0}}.
    llm_tenant_rpm: Optional[int] = None
    llm_tenant_tpm: Optional[int] = None
    llm_tenant_daily_usd: Optional[float] = None
    llm_tenant_limits_json: Optional[str] = None

    clickhouse_host: str = "127.0.0.1"
    clickhouse_port: int = 9000
    clickhouse_http_port: int = 8123
    clickhouse_user: str = "default"
    clickhouse_password: str = ""
    clickhouse_database: str = "aietl"
    # The least-privilege user of the demo's (and the test deployments') connections to this ClickHouse:
    # only these databases (users.xml allow_databases; 18.16 has no SQL grants), its password derived on the
    # local stack like the others. Never the platform's database.
    clickhouse_demo_user: str = "aietl_demo"
    clickhouse_demo_password: str = ""
    clickhouse_demo_databases: str = "default,analytics,mart,reports"

    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "aietl"
    postgres_password: str = "aietl"
    postgres_db: str = "aietl"
    # The demo connections' role: no superuser, reads the demo data's schemas and writes only what it creates
    # (infra/postgres_server.py grants it; services/demo/load.py grants read on each schema it loads).
    postgres_demo_user: str = "aietl_demo"
    postgres_demo_password: str = "aietl_demo"
    # Fernet key(s) for connection secrets at rest (comma-separated: the first encrypts, all decrypt);
    # unset: a key generated once into <state_dir>/secret.key (0600). See services.connectors.secrets.
    secret_key: Optional[str] = Field(default=None, repr=False)  # repr=False: keep it out of logs
    # Webhook secrets are derived from a key of their own (comma-separated: the first signs, all verify);
    # unset: generated once into <state_dir>/webhook.key (0600). See services.triggers.webhooks.
    webhook_key: Optional[str] = Field(default=None, repr=False)

    # Connections that cannot be turned against the host (docs/SECURITY.md, item 4). HTTP sources reach
    # public addresses only, unless these CIDRs or host names (comma-separated) open an intranet API.
    http_allow_networks: Optional[str] = None
    # Folders file connections may read (comma-separated; unset: the state dir, which holds the demo's
    # landing folder, and the system temp dir). Checked after symlinks are resolved.
    file_roots: Optional[str] = None
    # Topics of the platform's own broker that kafka connections may see and pipelines read or write (fnmatch
    # patterns, comma-separated); none by default. The platform's own topics are never shared.
    kafka_shared_topics: Optional[str] = None

    # Optional JWT bearer tokens (services/identity/tokens.py); all unset: only API keys are accepted.
    # One of: an HS256 secret, a PEM public key (RS256/ES256) or a JWKS URL. aud/iss checked when set.
    jwt_secret: Optional[str] = Field(default=None, repr=False)
    jwt_public_key: Optional[str] = None
    jwt_jwks_url: Optional[str] = None
    jwt_audience: Optional[str] = None
    jwt_issuer: Optional[str] = None
    jwt_tenant_claim: str = "tenant"
    jwt_role_claim: str = "role"

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # How long a lifecycle/run endpoint waits for the aggregate's verdict before answering 202 instead.
    command_wait_s: float = 10.0
    # Signed webhooks: accepted clock skew of X-Aietl-Timestamp (replays are remembered for twice this).
    webhook_window_s: int = 300
    # Limits (gateway/limits.py): a token bucket per principal, refilled at rate_limit_per_s up to
    # rate_limit_burst requests (generous for polling clients; a burst of ~1,500 requests is refused with
    # 429); failed authentications per source address per window (slows key guessing); live SSE streams per
    # principal; request bodies (webhook bodies become one Kafka message, whose broker limit is ~1 MB).
    rate_limit_per_s: float = 25.0
    rate_limit_burst: int = 600
    auth_failures_max: int = 30
    auth_failures_window_s: int = 60
    sse_max_streams: int = 10
    max_body_bytes: int = 1024 * 1024
    max_hook_body_bytes: int = 256 * 1024
    max_json_depth: int = 64
    # Drafting: a pipeline waiting longer than this for one agent stage is marked failed with the reason
    # (a cold local model can take minutes per answer); the reflector's watchdog looks every watchdog_s.
    agent_stage_timeout_s: float = 900.0
    agent_watchdog_s: float = 30.0

    # Executor: runs of different pipelines in parallel (one pipeline's runs always go one at a time, since
    # each starts from the previous one's high-water mark), attempts per run for retryable errors with
    # exponential backoff, and the rows per Arrow batch (bounds memory).
    executor_concurrency: int = 4
    executor_max_attempts: int = 3
    executor_retry_base_s: float = 1.0
    executor_batch_rows: int = 10_000
    # Several executors share the work by per-pipeline leases in Redis; a dead one's leases expire after
    # this long. instance_id names this process (default: the host name, so a restart reclaims its leases).
    executor_lease_s: float = 15.0
    instance_id: Optional[str] = None

    # Readiness: the processors this deployment runs, comma-separated (unset: every declared processor);
    # /readyz is ready only when each has live members in its consumer group.
    processors: Optional[str] = None
    # Supervisor (`aietl start`): a crashed worker is restarted after base * 2^(n-1) s (at most max_s);
    # after max_crashes crashes within window_s it is marked failed and left down.
    supervisor_backoff_base_s: float = 1.0
    supervisor_backoff_max_s: float = 30.0
    supervisor_max_crashes: int = 5
    supervisor_crash_window_s: float = 300.0

    # Which stack components `aietl up` manages; an empty value skips a component.
    manage_os_services: bool = True

    # Test hook: name of a point at which a worker kills itself with SIGKILL (see services.core.faults).
    fault_point: Optional[str] = None
    log_level: str = "info"

    @model_validator(mode="after")
    def _local_stack_passwords(self) -> "Settings":
        # The local stack's servers have passwords derived from <state_dir>/stack.secret once `aietl up`
        # made it (services/core/stack_secrets.py); a value given explicitly is kept.
        from services.core.stack_secrets import local_overrides

        configured = self.redis_url
        for name, value in local_overrides(self.state_dir, set(self.model_fields_set),
                                           {"redis_url": self.redis_url, "principal": self.kafka_principal}).items():
            object.__setattr__(self, name, value)
        self._redis_url_derived = (configured, self.redis_url)
        return self

    @property
    def redis_url_configured(self) -> str:
        # A copy given another redis_url (model_copy skips validation) has nothing derived to drop.
        configured, derived = self._redis_url_derived or (self.redis_url, self.redis_url)
        return configured if self.redis_url == derived else self.redis_url

    @property
    def instance_name(self) -> str:
        import socket

        return self.instance_id or socket.gethostname()

    @property
    def postgres_dsn(self) -> str:
        return (f"postgresql://{self.postgres_user}:{self.postgres_password}@{self.postgres_host}:"
                f"{self.postgres_port}/{self.postgres_db}")

    def llm_scoped(self) -> "Settings":
        """Router state (breakers, budgets, caches, stats) is namespaced like this deployment's topics."""
        return self.model_copy(update={"llm_key_prefix": f"{self.topic_prefix}llm:"})

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``pipelines.events.v1``."""
        return f"{self.topic_prefix}{name}"


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
