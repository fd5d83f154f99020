"""The local stack's server passwords (services/core/stack_secrets.py): derived from one 0600 secret, filled
into settings unless given explicitly, never present before `aietl up` made the secret."""
import stat

from services.core.settings import Settings
from services.core.stack_secrets import ensure_secret, password, secret_path, with_password


def test_without_the_secret_nothing_changes(tmp_path):
    s = Settings(state_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    assert (s.redis_url, s.clickhouse_password, s.postgres_password) == ("redis://127.0.0.1:6379/0", "", "aietl")


def test_the_secret_is_private_and_made_once(tmp_path):
    ensure_secret(tmp_path)
    first = secret_path(tmp_path).read_text()
    ensure_secret(tmp_path)
    assert secret_path(tmp_path).read_text() == first
    assert stat.S_IMODE(secret_path(tmp_path).stat().st_mode) == 0o600


def test_every_process_derives_the_same_distinct_passwords(tmp_path):
    ensure_secret(tmp_path)
    a, b = Settings(state_dir=tmp_path), Settings(state_dir=tmp_path)
    assert a.clickhouse_password == b.clickhouse_password == password(tmp_path, "clickhouse")
    assert a.postgres_password == password(tmp_path, "postgres") != a.clickhouse_password
    assert len({password(tmp_path, n) for n in ("redis", "clickhouse", "postgres")}) == 3
    assert a.redis_url.startswith(f"redis://:{password(tmp_path, 'redis')}@127.0.0.1:")
    # a copy for a test deployment or a child process keeps them
    assert a.model_copy(update={"topic_prefix": "x."}).postgres_password == a.postgres_password


def test_an_explicit_password_or_a_remote_redis_wins(tmp_path):
    ensure_secret(tmp_path)
    s = Settings(state_dir=tmp_path, postgres_password="given", clickhouse_password="also",
                 redis_url="redis://cache.internal:6379/0")
    assert (s.postgres_password, s.clickhouse_password, s.redis_url) == ("given", "also", "redis://cache.internal:6379/0")
    # a local Redis on another port is still the stack's
    assert Settings(state_dir=tmp_path, redis_url="redis://127.0.0.1:16380/2").redis_url.endswith("@127.0.0.1:16380/2")
    assert Settings(state_dir=tmp_path, redis_url="redis://:mine@127.0.0.1:6379/0").redis_url == "redis://:mine@127.0.0.1:6379/0"


def test_with_password_keeps_user_host_port_and_path():
    assert with_password("redis://app@127.0.0.1:6390/3", "p/w") == "redis://app:p%2Fw@127.0.0.1:6390/3"


def test_each_process_gets_its_redis_roles_user_and_password(tmp_path):
    from urllib.parse import urlparse

    from services.core.stack_secrets import ROLE_OF_PRINCIPAL, redis_acl

    ensure_secret(tmp_path)
    seen = set()
    for principal, role in ROLE_OF_PRINCIPAL.items():
        url = urlparse(Settings(state_dir=tmp_path, kafka_principal=principal,
                                redis_url="redis://127.0.0.1:6390/2").redis_url)
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", 6390, "/2")
        assert (url.username or "default") == role and url.password not in seen
        seen.add(url.password)
    # the server's users carry exactly those passwords
    rules = dict(redis_acl(tmp_path))
    gateway = urlparse(Settings(state_dir=tmp_path, kafka_principal="gateway").redis_url)
    assert f">{gateway.password}" in rules["gateway"].split()
    # a process that uses no Redis gets no credentials; a password the user gave is everyone's, as before
    local = "redis://127.0.0.1:6379/0"
    assert Settings(state_dir=tmp_path, kafka_principal="metrics-sink", redis_url=local).redis_url == local
    given = "redis://:mine@127.0.0.1:6379/0"
    assert Settings(state_dir=tmp_path, kafka_principal="gateway", redis_url=given).redis_url == given


def test_the_demo_users_get_passwords_of_their_own(tmp_path):
    ensure_secret(tmp_path)
    s = Settings(state_dir=tmp_path)
    assert s.postgres_demo_password == password(tmp_path, "postgres:demo") != s.postgres_password
    assert s.clickhouse_demo_password == password(tmp_path, "clickhouse:demo") != s.clickhouse_password
