"""Signed webhooks: a pipeline deployed with a webhook trigger runs when its hook is called.

The hook id is the pipeline id; its secret is derived from the webhook key and the hook's generation
(bumped by a rotation; services/triggers/hook_store.py), never stored. The secret is shown to, and rotated
by, the tenant's admins only. A delivery is verified before anything else happens (only the hook's
generation is looked up), and an accepted delivery's signature is remembered for twice the timestamp
window, so a replay inside the window is refused. Its run id is derived from the
signature too: even if Redis forgot, the aggregate refuses a second run with that id.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Optional

from fastapi import APIRouter, Depends, Request

from gateway_api import audit
from gateway_api.auth import actor, require
from gateway_api.lookups import hook_pipeline_state, pipeline_state
from gateway_api.problems import PROBLEM_JSON, Problem
from gateway_api.routers.runs import request_run
from services.identity import Principal
from services.triggers import webhooks

router = APIRouter(prefix="/api/v1", tags=["webhooks"])
_PROBLEM = {"content": {PROBLEM_JSON: {}}}
TRIGGER_EVENTS = ("PipelineDeployed", "PipelineRolledBack")
WEBHOOK_KEY_FILE = "webhook.key"
ADMIN = Depends(require("webhooks.secret"))
_LOG_CHUNK = 200


# ---------------------------------------------------------------- secrets

def _load_webhook_keys(settings) -> list[str]:
    """The webhook key(s): AIETL_WEBHOOK_KEY, else <state_dir>/webhook.key (generated once, 0600). A key of
    its own: the key that encrypts connection secrets never signs anything a caller sees."""
    from services.connectors.secrets import load_or_create_key_file, parse_keys

    configured = settings.webhook_key or os.environ.get("AIETL_WEBHOOK_KEY")
    keys = parse_keys(configured) if configured else [load_or_create_key_file(settings.state_dir, WEBHOOK_KEY_FILE)]
    return [k.decode() for k in keys]


async def _webhook_keys(request: Request) -> list[str]:
    state = request.app.state
    keys = getattr(state, "hook_keys", None)
    if keys is None:
        from services.connectors.secrets import SecretsError

        try:
            keys = await asyncio.to_thread(_load_webhook_keys, state.deps.settings)
        except SecretsError as exc:
            raise Problem(500, "Webhook secrets unavailable", str(exc)) from None
        state.hook_keys = keys
    return keys


def _hook_store(request: Request):
    state = request.app.state
    if getattr(state, "hook_store", None) is None:
        from services.triggers.hook_store import build_hook_store

        state.hook_store = build_hook_store(state.deps.settings)
    return state.hook_store


async def _store_call(fn, *args):
    from services.triggers.hook_store import HookStoreUnavailable

    try:
        return await asyncio.to_thread(fn, *args)
    except HookStoreUnavailable as exc:
        raise Problem(exc.status, exc.title, str(exc)) from None


async def hook_secrets(request: Request, hook_id: str, generation: Optional[int] = None) -> list[str]:
    """The hook's current secret first, then those of older webhook keys (still accepted during a key
    rotation); only the current generation of the hook's own secret is ever accepted."""
    if generation is None:
        try:
            hook_id = str(uuid.UUID(hook_id))
        except ValueError:  # no such hook: the signature fails like any other wrong one
            generation = 0
        else:
            generation = await _store_call(_hook_store(request).generation, hook_id)
    return [webhooks.hook_secret(k, hook_id, generation) for k in await _webhook_keys(request)]


# ---------------------------------------------------------------- what is deployed

def _spec_trigger(spec_json) -> str:
    spec = json.loads(spec_json) if isinstance(spec_json, str) else (spec_json or {})
    return (spec.get("trigger") or {}).get("kind") or "manual"


async def _trigger_from_log(deps, pid: str) -> Optional[str]:
    """The last deploy or rollback in the pipeline's events, read backwards in chunks."""
    key, end = deps.keys.events(pid), -1
    while True:
        chunk = await deps.redis.lrange(key, end - _LOG_CHUNK + 1, end)
        for raw in reversed(chunk):
            ev = json.loads(raw)
            if ev["type"] in TRIGGER_EVENTS:
                return _spec_trigger(json.loads(ev["payload"]["artifacts_json"]).get("spec_json"))
        if len(chunk) < _LOG_CHUNK:
            return None
        end -= _LOG_CHUNK


async def deployed_trigger(deps, state: dict) -> Optional[str]:
    """The trigger kind of the deployed version, or None when nothing is deployed."""
    deployed = state.get("deployed")
    if deployed:
        return (deployed.get("trigger") or {}).get("kind") or "manual"
    version = state.get("deployed_version")
    if version is not None:
        for v in state.get("versions") or []:
            if v.get("draft_version") == version:
                return _spec_trigger((v.get("artifacts") or {}).get("spec_json"))
    if "lifecycle" in state:  # a read model that tracks deployments and has none for this pipeline
        return None
    return await _trigger_from_log(deps, state["pipeline_id"])  # a read model from before deployments


# ---------------------------------------------------------------- routes

def signing_help(window_s: int) -> dict:
    return {
        "algorithm": "HMAC-SHA256",
        "timestamp_header": webhooks.TIMESTAMP_HEADER,
        "signature_header": webhooks.SIGNATURE_HEADER,
        "signed_payload": "<timestamp>.<raw body>",
        "format": "sha256=<hex digest>",
        "timestamp": f"unix seconds, within ±{window_s} s of the server's clock",
        "body": "a JSON object; it becomes the run's parameters",
        "example": ("ts=$(date +%s); body='{\"file\": \"batch_0001.csv\"}'; "
                    "sig=$(printf '%s.%s' \"$ts\" \"$body\" | openssl dgst -sha256 -hmac \"$SECRET\" | "
                    "sed 's/^.* //'); curl -X POST \"$URL\" -H \"X-Aietl-Timestamp: $ts\" "
                    "-H \"X-Aietl-Signature: sha256=$sig\" -H 'Content-Type: application/json' -d \"$body\""),
    }


@router.get("/pipelines/{pipeline_id}/webhook", summary="The pipeline's webhook: URL, secret and how to sign "
            "(admins only: the secret starts runs)",
            responses={404: {"description": "No such pipeline", **_PROBLEM}})
async def get_webhook(pipeline_id: str, request: Request, who: Principal = ADMIN) -> dict:
    deps = request.app.state.deps
    state = await pipeline_state(deps, pipeline_id, who.tenant)
    info = await _webhook_info(request, state)
    await audit.record(deps, who, "webhook.secret.read", pipeline_id=state["pipeline_id"])
    return info


async def _webhook_info(request: Request, state: dict, generation: Optional[int] = None) -> dict:
    deps = request.app.state.deps
    hook_id = state["pipeline_id"]
    if generation is None:
        generation = await _store_call(_hook_store(request).generation, hook_id)
    return {"hook_id": hook_id, "url": f"/api/v1/hooks/{hook_id}",
            "secret": (await hook_secrets(request, hook_id, generation))[0], "generation": generation,
            "rotate": f"/api/v1/pipelines/{hook_id}/webhook/rotate",
            "deployed_trigger": await deployed_trigger(deps, state),
            "signature": signing_help(deps.settings.webhook_window_s)}


@router.post("/pipelines/{pipeline_id}/webhook/rotate",
             summary="Rotate the webhook's secret: the new one is returned, the old one is refused from now on "
             "(admins only)",
             responses={404: {"description": "No such pipeline", **_PROBLEM}})
async def rotate_webhook(pipeline_id: str, request: Request, who: Principal = ADMIN) -> dict:
    state = await pipeline_state(request.app.state.deps, pipeline_id, who.tenant)
    generation = await _store_call(_hook_store(request).rotate, state["pipeline_id"], who.tenant, actor(who))
    info = await _webhook_info(request, state, generation)
    await audit.record(request.app.state.deps, who, "webhook.secret.rotate", pipeline_id=state["pipeline_id"])
    return info


def _verify(secrets: list[str], request: Request, body: bytes, window_s: int) -> str:
    try:
        _, signature = webhooks.verify(secrets, request.headers.get(webhooks.TIMESTAMP_HEADER),
                                       request.headers.get(webhooks.SIGNATURE_HEADER), body, time.time(),
                                       window_s)
    except webhooks.StaleTimestampError as exc:
        raise Problem(401, "Webhook timestamp out of range", str(exc)) from None
    except webhooks.WebhookError as exc:
        raise Problem(401, "Invalid webhook signature", str(exc)) from None
    except ValueError:  # a timestamp longer than int() parses (4,300 digits)
        raise Problem(401, "Invalid webhook signature",
                      f"{webhooks.TIMESTAMP_HEADER} must be whole unix seconds") from None
    return signature


def _params(body: bytes) -> dict:
    try:
        params = json.loads(body)
    except ValueError:
        params = None
    if not isinstance(params, dict):
        raise Problem(422, "Invalid request", "the webhook body must be a JSON object (the run's parameters)")
    return params


@router.post("/hooks/{hook_id}", status_code=202, summary="Call a pipeline's signed webhook: starts a run",
             responses={401: {"description": "Missing, invalid or stale signature", **_PROBLEM},
                        404: {"description": "No such hook", **_PROBLEM},
                        409: {"description": "Replayed delivery, or the pipeline is not deployed with a "
                                             "webhook trigger (or is paused)", **_PROBLEM},
                        422: {"description": "The body is not a JSON object", **_PROBLEM}})
async def call_hook(hook_id: str, request: Request):
    deps = request.app.state.deps
    body = await request.body()
    # Nothing but the hook's secret generation is read, and nothing written, before the caller has proved
    # it holds the secret.
    signature = _verify(await hook_secrets(request, hook_id), request, body, deps.settings.webhook_window_s)
    params = _params(body)
    # No principal here: the signature is the credential, and the tenant is the hooked pipeline's own.
    state = await hook_pipeline_state(deps, hook_id)
    pid = state["pipeline_id"]
    trigger = await deployed_trigger(deps, state)
    if trigger != "webhook":
        raise Problem(409, "Pipeline not triggered by webhooks",
                      "nothing is deployed yet" if trigger is None else
                      f"the deployed version runs on a {trigger} trigger, not on its webhook")
    seen = f"{deps.keys.ns}hook:{pid}:seen:{signature}"
    # Timestamps older than the window are refused anyway, so remembering twice the window is enough.
    if not await deps.redis.set(seen, int(time.time()), nx=True, ex=2 * deps.settings.webhook_window_s):
        raise Problem(409, "Webhook delivery already accepted",
                      "this timestamp and signature were accepted before; sign each delivery anew")
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"aietl-hook:{pid}:{signature}"))
    try:
        return await request_run(deps, pid, run_id, "webhook", params, tenant=state["tenant_id"],
                                 sender="trigger:webhook")
    except Problem:
        await deps.redis.delete(seen)  # refused by the pipeline: the same delivery may be retried later
        raise
