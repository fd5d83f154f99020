"""Connection secrets: Fernet at rest, bound to their connection, never shown; connection validation."""
from __future__ import annotations

import logging
import os
import stat
import threading
from types import SimpleNamespace

import pytest

pytest.importorskip("cryptography")

from services.connectors import secrets as S  # noqa: E402
from services.connectors.registry import Connection, InvalidConnection, validate  # noqa: E402


def cipher(*keys):
    return S.SecretCipher([k.encode() for k in keys])


def test_round_trip_and_ciphertext_hides_the_value():
    key = S.generate_key()
    token = cipher(key).encrypt("acme", "warehouse", {"password": "hunter2-xyz", "headers": {"X-Key": "k"}})
    assert b"hunter2" not in token
    assert cipher(key).decrypt("acme", "warehouse", token) == {"password": "hunter2-xyz", "headers": {"X-Key": "k"}}


def test_a_wrong_key_cannot_decrypt():
    token = cipher(S.generate_key()).encrypt("acme", "warehouse", {"password": "p"})
    with pytest.raises(S.SecretsError, match="secret key is not the one"):
        cipher(S.generate_key()).decrypt("acme", "warehouse", token)


def test_a_token_moved_to_another_connection_does_not_decrypt():
    key = S.generate_key()
    token = cipher(key).encrypt("acme", "warehouse", {"password": "p"})
    with pytest.raises(S.SecretsError, match="another connection"):
        cipher(key).decrypt("evil", "warehouse", token)
    with pytest.raises(S.SecretsError):
        cipher(key).decrypt("acme", "other", token)


def test_key_rotation_first_key_encrypts_all_decrypt():
    old, new = S.generate_key(), S.generate_key()
    token = cipher(old).encrypt("t", "n", {"password": "p"})
    rotated = S.SecretCipher(S.parse_keys(f"{new}, {old}"))
    assert rotated.decrypt("t", "n", token) == {"password": "p"}
    assert cipher(new).decrypt("t", "n", rotated.encrypt("t", "n", {"a": "b"})) == {"a": "b"}


def test_a_malformed_key_is_a_clear_error():
    with pytest.raises(S.SecretsError, match="Fernet key"):
        S.SecretCipher([b"not-a-key"])


def test_key_file_is_created_once_with_0600(tmp_path):
    key = S.load_or_create_key_file(tmp_path / "state")
    path = tmp_path / "state" / S.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert S.load_or_create_key_file(tmp_path / "state") == key
    S.SecretCipher([key])  # a valid Fernet key
    assert [p.name for p in path.parent.iterdir()] == [S.KEY_FILE]  # no temp files left behind


def test_concurrent_first_use_agrees_on_one_key(tmp_path):
    keys, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        keys.append(S.load_or_create_key_file(tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1


def test_cipher_from_settings_prefers_the_configured_key(tmp_path, monkeypatch):
    monkeypatch.delenv("AIETL_SECRET_KEY", raising=False)
    key = S.generate_key()
    configured = S.cipher_from_settings(SimpleNamespace(secret_key=key, state_dir=tmp_path))
    assert not (tmp_path / S.KEY_FILE).exists()
    token = configured.encrypt("t", "n", {"x": "y"})
    assert cipher(key).decrypt("t", "n", token) == {"x": "y"}
    generated = S.cipher_from_settings(SimpleNamespace(secret_key=None, state_dir=tmp_path))
    assert (tmp_path / S.KEY_FILE).exists()
    with pytest.raises(S.SecretsError):
        generated.decrypt("t", "n", token)
    assert key not in repr(configured)


def test_connection_repr_and_public_view_mask_secrets(caplog):
    conn = Connection("acme", "wh", "postgres", {"host": "h", "database": "d", "user": "u"},
                      {"password": "hunter2-xyz", "api_key": "sk-abc"})
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("using %s", conn)
    for text in (repr(conn), str(conn), str(conn.public()), f"{conn}", caplog.text):
        assert "hunter2" not in text and "sk-abc" not in text
    assert conn.public()["secrets"] == {"api_key": "***set***", "password": "***set***"}


@pytest.mark.parametrize("name, kind, params, secrets, message", [
    ("wh", "oracle", {}, {}, "unknown connection kind 'oracle'"),
    ("wh", "postgres", {"host": "h", "user": "u"}, {}, "needs params: database"),
    ("wh", "file", {}, {}, "needs params: folder"),
    ("wh", "postgres", {"host": "h", "database": "d", "user": "u", "password": "x"}, {},
     "password must be given in secrets"),
    ("wh", "postgres", {"host": "h", "database": "d", "user": "u", "port": "abc"}, {}, "port must be an integer"),
    ("1bad", "file", {"folder": "/tmp"}, {}, "must start with a letter"),
    ("a/b", "file", {"folder": "/tmp"}, {}, "must start with a letter"),
])
def test_validation_errors_are_clear(name, kind, params, secrets, message):
    with pytest.raises(InvalidConnection, match=message):
        validate(name, kind, params, secrets)


def test_validation_normalises_the_port():
    assert validate("wh", "clickhouse", {"host": "h", "port": "9000"}, {})["port"] == 9000


def test_importing_the_package_loads_no_driver():
    import subprocess
    import sys

    code = ("import sys, services.connectors.registry, services.connectors.introspect, "
            "services.connectors.typemap, services.connectors.secrets, gateway_api.routers.connections;"
            "print(sorted(m for m in ('psycopg', 'cryptography', 'pyarrow', 'confluent_kafka', "
            "'clickhouse_driver') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "[]"
