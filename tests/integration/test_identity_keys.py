"""API keys against the stack's PostgreSQL: create, verify, list per tenant, revoke, expire; rows removed."""
import time
import uuid

import pytest

from services.core.settings import Settings
from services.identity import InvalidCredentials, KeyNotFound
from services.identity.keys import KeyStore


@pytest.fixture
def store():
    store = KeyStore(Settings().postgres_dsn, cache_seconds=0.0)
    made: list[str] = []
    yield store, made
    store.delete(made)


def test_key_lifecycle(store):
    store, made = store
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key, info = store.create(tenant, "editor", name="ci", created_by="test")
    made.append(info.prefix)
    principal = store.verify(key)
    assert (principal.tenant, principal.role, principal.subject) == (tenant, "editor", f"key:{info.prefix}")
    assert [k.prefix for k in store.list(tenant)] == [info.prefix]
    with pytest.raises(InvalidCredentials):  # right prefix, wrong secret
        store.verify(key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB"))
    with pytest.raises(KeyNotFound):  # another tenant cannot revoke it
        store.revoke(info.prefix, tenant="someone-else")
    store.revoke(info.prefix, tenant=tenant)
    with pytest.raises(InvalidCredentials, match="revoked"):
        store.verify(key)


def test_expired_key_is_refused(store):
    store, made = store
    key, info = store.create(f"t-{uuid.uuid4().hex[:8]}", "viewer", expires_in="1s")
    made.append(info.prefix)
    assert store.verify(key).role == "viewer"
    time.sleep(1.2)
    with pytest.raises(InvalidCredentials, match="expired"):
        store.verify(key)
