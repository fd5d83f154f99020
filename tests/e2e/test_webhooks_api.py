"""Signed webhooks over HTTP on the real stack: a correctly signed, fresh, first delivery to a deployed
webhook pipeline starts exactly one run with the body as its parameters; anything else changes nothing."""
import json
import time
import uuid

import pytest

from services.triggers.webhooks import sign

from tests.pipelines import drafting_deployment, events, request_draft

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
PAYLOAD = {"file": "batch_0001.csv"}


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "hook") as d:  # demo data and connections included
        yield d


@pytest.fixture
def http(dep):
    with dep.client(timeout=30) as c:
        yield c


def deployed(dep, description: str) -> str:
    state = request_draft(dep, description)
    assert state["status"] == "draft_ready", state
    pid = state["pipeline_id"]
    with dep.client() as c:
        resp = c.post(f"/api/v1/pipelines/{pid}/deploy", timeout=30)
        assert resp.status_code == 200 and resp.json()["event"] == "PipelineDeployed", resp.text
    return pid


@pytest.fixture(scope="module")
def hook_pipeline(dep) -> str:
    return deployed(dep, "When the webhook is called, load the CSV file named in its payload from the landing "
                         f"folder into ClickHouse analytics.landing_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def cron_pipeline(dep) -> str:
    return deployed(dep, "Load orders from the PostgreSQL table shop.orders into the ClickHouse table "
                         f"analytics.orders_{uuid.uuid4().hex[:8]} every day at 2 AM")


def webhook(http, pid) -> dict:
    resp = http.get(f"/api/v1/pipelines/{pid}/webhook")
    assert resp.status_code == 200, resp.text
    return resp.json()


def deliver(http, hook: dict, payload=PAYLOAD, *, ts: int | None = None, secret: str | None = None,
            body: bytes | None = None, headers: dict | None = None):
    raw = body if body is not None else json.dumps(payload).encode()
    ts = int(time.time()) if ts is None else ts
    signed = {"X-Aietl-Timestamp": str(ts), "X-Aietl-Signature": sign(secret or hook["secret"], ts, raw),
              "Content-Type": "application/json"}
    return http.post(hook["url"], content=raw, headers=signed if headers is None else headers)


def runs_requested(dep, pid) -> list[dict]:
    return [e for e in events(dep, pid) if e["type"] == "RunRequested"]


def problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    return resp.json()


def unchanged(dep, pid, before: list[dict]) -> None:
    time.sleep(0.5)  # anything sent would be decided and projected by now
    assert events(dep, pid) == before


def test_the_webhook_endpoint_tells_how_to_sign(http, hook_pipeline):
    hook = webhook(http, hook_pipeline)
    assert hook["hook_id"] == hook_pipeline and hook["url"] == f"/api/v1/hooks/{hook_pipeline}"
    assert len(hook["secret"]) == 64 and hook["deployed_trigger"] == "webhook"
    assert hook["signature"]["timestamp_header"] == "X-Aietl-Timestamp"
    assert hook["signature"]["signature_header"] == "X-Aietl-Signature"
    assert hook["signature"]["signed_payload"] == "<timestamp>.<raw body>"
    assert webhook(http, hook_pipeline)["secret"] == hook["secret"]  # derived, so stable


def test_a_signed_delivery_starts_one_run_with_the_payload_and_its_replay_is_409(dep, http, hook_pipeline):
    hook = webhook(http, hook_pipeline)
    ts = int(time.time())
    payload = {"file": "batch_0001.csv", "delivery": uuid.uuid4().hex}
    resp = deliver(http, hook, payload, ts=ts)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "queued" and body["pipeline_id"] == hook_pipeline
    assert resp.headers["location"] == body["links"]["run"] == f"/api/v1/runs/{body['run_id']}"
    [ev] = [e for e in runs_requested(dep, hook_pipeline) if e["payload"]["run_id"] == body["run_id"]]
    assert ev["payload"]["trigger_kind"] == "webhook" and json.loads(ev["payload"]["params_json"]) == payload

    before = events(dep, hook_pipeline)
    replay = problem(deliver(http, hook, payload, ts=ts), 409)
    assert "accepted before" in replay["detail"]
    unchanged(dep, hook_pipeline, before)


def test_one_delivery_never_makes_two_runs_even_if_the_replay_memory_is_lost(dep, http, hook_pipeline):
    import redis

    from services.projector.readmodel import Keys, namespace

    hook = webhook(http, hook_pipeline)
    ts, payload = int(time.time()), {"file": "batch_0001.csv", "delivery": uuid.uuid4().hex}
    first = deliver(http, hook, payload, ts=ts)
    assert first.status_code == 202, first.text
    ns = Keys(namespace(dep.settings.topic_prefix)).ns
    r = redis.Redis.from_url(dep.settings.redis_url)
    assert r.delete(*r.keys(f"{ns}hook:{hook_pipeline}:seen:*")) >= 1
    again = problem(deliver(http, hook, payload, ts=ts), 409)  # the aggregate knows the run id
    assert again["error_code"] == "wrong_lifecycle" and first.json()["run_id"] in again["detail"]
    assert len([e for e in runs_requested(dep, hook_pipeline)
                if e["payload"]["run_id"] == first.json()["run_id"]]) == 1


def test_a_delivery_signed_six_minutes_ago_is_401_and_changes_nothing(dep, http, hook_pipeline):
    hook = webhook(http, hook_pipeline)
    before = events(dep, hook_pipeline)
    stale = problem(deliver(http, hook, ts=int(time.time()) - 360), 401)
    assert stale["title"] == "Webhook timestamp out of range" and "old" in stale["detail"]
    assert "300" in stale["detail"]
    future = problem(deliver(http, hook, ts=int(time.time()) + 360), 401)
    assert "future" in future["detail"]
    unchanged(dep, hook_pipeline, before)


@pytest.mark.parametrize("case", ["wrong secret", "tampered body", "no signature", "no timestamp", "garbage"])
def test_a_missing_or_bad_signature_is_401_and_changes_nothing(dep, http, hook_pipeline, case):
    hook = webhook(http, hook_pipeline)
    raw = json.dumps(PAYLOAD).encode()
    ts = int(time.time())
    good = {"X-Aietl-Timestamp": str(ts), "X-Aietl-Signature": sign(hook["secret"], ts, raw)}
    headers = {
        "wrong secret": {**good, "X-Aietl-Signature": sign("0" * 64, ts, raw)},
        "tampered body": good,
        "no signature": {"X-Aietl-Timestamp": str(ts)},
        "no timestamp": {"X-Aietl-Signature": good["X-Aietl-Signature"]},
        "garbage": {"X-Aietl-Timestamp": "now", "X-Aietl-Signature": "md5=abc"},
    }[case]
    body = raw.replace(b"0001", b"0002") if case == "tampered body" else raw
    before = events(dep, hook_pipeline)
    resp = problem(http.post(hook["url"], content=body, headers={**headers, "Content-Type": "application/json"}),
                   401)
    assert resp["title"] == "Invalid webhook signature" and "X-Aietl-" in resp["detail"]
    unchanged(dep, hook_pipeline, before)


def test_unknown_hooks_are_checked_for_a_signature_first(http):
    resp = problem(http.post(f"/api/v1/hooks/{uuid.uuid4()}", json=PAYLOAD), 401)
    assert "missing" in resp["detail"]


def test_a_pipeline_not_triggered_by_webhooks_refuses_its_hook_with_409(dep, http, cron_pipeline):
    hook = webhook(http, cron_pipeline)
    assert hook["deployed_trigger"] == "cron"
    before = events(dep, cron_pipeline)
    resp = problem(deliver(http, hook), 409)
    assert "cron" in resp["detail"]
    unchanged(dep, cron_pipeline, before)


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"batch_0001.csv"', b"{not json", b""])
def test_a_body_that_is_not_a_json_object_is_422_and_changes_nothing(dep, http, hook_pipeline, raw):
    hook = webhook(http, hook_pipeline)
    before = events(dep, hook_pipeline)
    resp = problem(deliver(http, hook, body=raw), 422)
    assert "JSON object" in resp["detail"]
    unchanged(dep, hook_pipeline, before)


def test_a_paused_pipeline_refuses_a_delivery_that_succeeds_once_resumed(dep, http, hook_pipeline):
    hook = webhook(http, hook_pipeline)
    base = f"/api/v1/pipelines/{hook_pipeline}"
    assert http.post(f"{base}/pause").status_code == 200
    try:
        ts, payload = int(time.time()), {"file": "batch_0001.csv", "delivery": uuid.uuid4().hex}
        refused = problem(deliver(http, hook, payload, ts=ts), 409)
        assert refused["error_code"] == "wrong_lifecycle" and "paused" in refused["detail"]
    finally:
        assert http.post(f"{base}/resume").status_code == 200
    # The refusal changed nothing: the very same delivery is accepted now.
    accepted = deliver(http, hook, payload, ts=ts)
    assert accepted.status_code == 202, accepted.text
    [ev] = [e for e in runs_requested(dep, hook_pipeline) if e["payload"]["run_id"] == accepted.json()["run_id"]]
    assert json.loads(ev["payload"]["params_json"]) == payload


# ---------------------------------------------------------------- who sees and rotates the secret

def test_only_the_tenants_admins_see_or_rotate_the_secret(dep, hook_pipeline):
    for role in ("viewer", "editor"):
        with dep.client(key=dep.new_key(role)) as c:
            for resp in (c.get(f"/api/v1/pipelines/{hook_pipeline}/webhook"),
                         c.post(f"/api/v1/pipelines/{hook_pipeline}/webhook/rotate")):
                body = problem(resp, 403)
                assert "secret" not in body and "webhooks.secret" in body["detail"]
    with dep.client(key=dep.new_key("admin", tenant=f"{dep.tenant}-other")) as other:
        assert problem(other.post(f"/api/v1/pipelines/{hook_pipeline}/webhook/rotate"), 404)


def test_the_secret_is_derived_from_its_own_key_not_the_connection_secret_key(dep, http, hook_pipeline):
    from services.connectors.secrets import load_or_create_key_file
    from services.triggers.webhooks import hook_secret

    hook = webhook(http, hook_pipeline)
    connection_key = load_or_create_key_file(dep.settings.state_dir).decode()
    own_key = (dep.settings.state_dir / "webhook.key").read_text().strip()
    assert own_key != connection_key
    assert hook["secret"] == hook_secret(own_key, hook_pipeline, hook["generation"])
    assert hook["secret"] != hook_secret(connection_key, hook_pipeline, hook["generation"])


def test_a_rotated_secret_is_refused_at_once_and_the_new_one_starts_a_run(dep, http, hook_pipeline):
    old = webhook(http, hook_pipeline)
    rotated = http.post(f"/api/v1/pipelines/{hook_pipeline}/webhook/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["generation"] == old["generation"] + 1 and new["secret"] != old["secret"]
    assert webhook(http, hook_pipeline)["secret"] == new["secret"]  # what GET shows from now on
    before = events(dep, hook_pipeline)
    stale = problem(deliver(http, old, {"file": "batch_0001.csv", "delivery": uuid.uuid4().hex}), 401)
    assert stale["title"] == "Invalid webhook signature"
    unchanged(dep, hook_pipeline, before)
    accepted = deliver(http, new, {"file": "batch_0001.csv", "delivery": uuid.uuid4().hex})
    assert accepted.status_code == 202, accepted.text
