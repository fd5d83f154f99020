"""gateway_api.auth.require on a small app against the stack's PostgreSQL and Redis: no credential, a
malformed, revoked or expired key and a bad JWT are 401 problem+json with WWW-Authenticate; a viewer on an
editor permission is 403; a valid key or JWT passes and sets request.state.principal."""
import time
import types
import uuid

import jwt
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from gateway_api import auth, problems
from gateway_api.app import _redis
from services.core.settings import Settings
from services.identity.keys import KeyStore
from services.identity.tokens import JwtVerifier
from services.projector.readmodel import Keys

JWT_SECRET = "auth-dependency-test-secret-32-bytes!"


@pytest.fixture
def app_and_keys():
    prefix = f"t-auth-{uuid.uuid4().hex[:8]}-"
    settings = Settings(topic_prefix=prefix)
    store = KeyStore(settings.postgres_dsn, cache_seconds=0.0)
    app = FastAPI()
    problems.install(app)

    @app.get("/read")
    async def read(request: Request, principal=Depends(auth.require("pipelines.read"))):
        assert request.state.principal is principal
        return {"tenant": principal.tenant, "role": principal.role, "subject": principal.subject}

    @app.post("/write")
    async def write(principal=Depends(auth.require("pipelines.write"))):
        return {"ok": True}

    made = []
    with TestClient(app) as client:
        redis = _redis(settings)
        app.state.deps = types.SimpleNamespace(settings=settings, redis=redis, keys=Keys(f"{prefix}rm:"))
        app.state.identity = (store, JwtVerifier(secret=JWT_SECRET))
        yield client, store, made
        client.portal.call(_cleanup, redis, prefix)
    store.delete(made)


async def _cleanup(redis, prefix):
    async for key in redis.scan_iter(f"{prefix}*"):
        await redis.delete(key)
    await redis.aclose()


def _assert_401(resp):
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["status"] == 401


def test_credentials(app_and_keys):
    client, store, made = app_and_keys
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    viewer, info = store.create(tenant, "viewer")
    made.append(info.prefix)
    editor, info2 = store.create(tenant, "editor")
    made.append(info2.prefix)

    _assert_401(client.get("/read"))
    _assert_401(client.get("/read", headers={"Authorization": "Bearer aietl_nothere_x"}))
    _assert_401(client.get("/read", headers={"Authorization": "Bearer " + viewer[:-3] + "zzz"}))

    ok = client.get("/read", headers={"Authorization": f"Bearer {viewer}"})
    assert ok.status_code == 200 and ok.json() == {"tenant": tenant, "role": "viewer",
                                                   "subject": f"key:{info.prefix}"}
    assert client.get("/read", headers={"X-API-Key": viewer}).status_code == 200

    forbidden = client.post("/write", headers={"Authorization": f"Bearer {viewer}"})
    assert forbidden.status_code == 403 and forbidden.headers["content-type"].startswith("application/problem+json")
    assert client.post("/write", headers={"Authorization": f"Bearer {editor}"}).status_code == 200

    store.revoke(info2.prefix)
    _assert_401(client.post("/write", headers={"Authorization": f"Bearer {editor}"}))

    short, info3 = store.create(tenant, "viewer", expires_in="1s")
    made.append(info3.prefix)
    time.sleep(1.2)
    _assert_401(client.get("/read", headers={"Authorization": f"Bearer {short}"}))


def test_jwt(app_and_keys):
    client = app_and_keys[0]
    claims = {"sub": "bob", "tenant": "acme", "role": "editor", "exp": int(time.time()) + 60}
    good = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    resp = client.get("/read", headers={"Authorization": f"Bearer {good}"})
    assert resp.status_code == 200 and resp.json()["subject"] == "jwt:bob"
    _assert_401(client.get("/read", headers={
        "Authorization": "Bearer " + jwt.encode(claims, "a-different-secret-of-32-bytes-long!", algorithm="HS256")}))
    _assert_401(client.get("/read", headers={
        "Authorization": "Bearer " + jwt.encode({**claims, "exp": int(time.time()) - 5}, JWT_SECRET,
                                                algorithm="HS256")}))
