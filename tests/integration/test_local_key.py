"""The local operator's key (`make run`): made once into <state_dir>/api_key (0600), reused while valid,
replaced when revoked or of another tenant; AIETL_API_KEY wins. Against the stack's PostgreSQL."""
import stat
import uuid

import pytest

from services.core.settings import load_settings
from services.identity.keys import KeyStore
from services.identity.local import ENV, ensure_local_key, key_file

pytestmark = pytest.mark.integration


@pytest.fixture
def local(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    tenant = f"t-local-{uuid.uuid4().hex[:8]}"
    # The stack's settings (its derived passwords come with them), with a state dir of the test's own.
    settings = load_settings(tenant_id=tenant).model_copy(update={"state_dir": tmp_path})
    store = KeyStore(settings.postgres_dsn, cache_seconds=0.0)
    yield settings, store
    store.delete([k.prefix for t in (tenant, f"{tenant}-2") for k in store.list(t)])


def test_the_first_key_is_stored_0600_and_reused(local):
    settings, store = local
    key, created = ensure_local_key(settings, store)
    assert created and key_file(settings).read_text().strip() == key
    assert stat.S_IMODE(key_file(settings).stat().st_mode) == 0o600
    principal = store.verify(key)
    assert (principal.tenant, principal.role) == (settings.tenant_id, "admin")
    assert ensure_local_key(settings, store) == (key, False)
    assert len(store.list(settings.tenant_id)) == 1


def test_a_revoked_or_foreign_stored_key_is_replaced(local):
    settings, store = local
    first, _ = ensure_local_key(settings, store)
    store.revoke(store.verify(first).key_id)
    second, created = ensure_local_key(settings, store)
    assert created and second != first and key_file(settings).read_text().strip() == second
    other = settings.model_copy(update={"tenant_id": f"{settings.tenant_id}-2"})
    third, created = ensure_local_key(other, store)  # the stored key acts for another tenant
    assert created and store.verify(third).tenant == other.tenant_id


def test_aietl_api_key_wins_and_nothing_is_made(local, monkeypatch):
    settings, store = local
    monkeypatch.setenv(ENV, "aietl_0123abcd_given")
    assert ensure_local_key(settings, store) == ("aietl_0123abcd_given", False)
    assert not key_file(settings).exists() and store.list(settings.tenant_id) == []
