"""The public cases with a real small model planning (``make test-llm``; never part of ``make test``).

Two configurations of the same running system: the model first with the builtin as fallback, and the
model alone for the plan task. Each case's result goes to docs/EVAL.md as soon as it is known. The
fallback configuration must get every case right; the model alone is measured, not asserted.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from services.runtime import WORKERS
from tests.harness import new_deployment
from tests.llm import model_server, report

pytestmark = [pytest.mark.skipif(os.environ.get("AIETL_TEST_LLM") != "1",
                                 reason="needs a real model: run `make test-llm`"),
              pytest.mark.timeout(4 * 3600)]  # a CPU model takes minutes per case
CASES = yaml.safe_load((Path(__file__).parents[1] / "fixtures" / "public_cases.yaml").read_text())["cases"]
TERMINAL = {"draft_ready", "draft_failed", "needs_clarification", "refused"}
CASE_TIMEOUT_S = 1200  # three plan calls of a cold CPU model, plus the agents after it
LLM = "qwen-local"


def llm_provider(base_url: str) -> dict:
    return {"name": LLM, "kind": "llamacpp", "model": model_server.MODEL_NAME, "base_url": base_url,
            "strengths": ["plan"], "tasks": ["plan"], "timeout_s": 420, "max_concurrency": 1}


CONFIGS = {
    "model first, builtin fallback": (
        "Providers: the model (plan only), then the builtin for every task (plan fallback, SQL, reflection).",
        lambda base: [llm_provider(base), {"name": "builtin", "kind": "builtin",
                                           "strengths": ["plan", "sql", "reflect"]}]),
    "model alone (plan)": (
        "Providers: the model is the only one allowed to plan; the builtin compiles SQL and reflects only.",
        lambda base: [llm_provider(base), {"name": "builtin", "kind": "builtin", "strengths": ["sql", "reflect"],
                                           "tasks": ["sql", "reflect"]}]),
}


def _spec_problems(cid: str, spec: dict) -> list[str]:
    """The facts each public case asks for, read from its request (see public_cases.yaml)."""
    src, dst = spec.get("source") or {}, spec.get("target") or {}
    cron = (spec.get("schedule") or {}).get("cron")
    trigger = (spec.get("trigger") or {}).get("kind")
    filters = {(f.get("column"), f.get("op"), str(f.get("value"))) for f in spec.get("filters") or []}
    agg = spec.get("aggregate") or {}
    measures = {(m.get("fn"), m.get("column")) for m in agg.get("measures") or []}
    cleaning = {(c.get("op"), c.get("column"), c.get("value")) for c in spec.get("cleaning") or []}
    checks = {
        "P01": [(src.get("table"), "shop.orders"), (dst.get("table"), "analytics.orders"), (cron, "0 2 * * *"),
                (trigger, "cron")],
        "P02": [(dst.get("table"), "analytics.daily_revenue"), (("status", "=", "paid") in filters, True),
                (("amount", ">", "0") in filters, True), (agg.get("period"), "day"), (("sum", "amount") in measures, True)],
        "P03": [(src.get("kind"), "file"), (src.get("path"), "customers.csv"), (dst.get("table"), "public.customers"),
                (("lowercase", "email", None) in cleaning, True), (("dedupe", "email", None) in cleaning, True),
                (("fill_empty", "city", "Unknown") in cleaning, True)],
        "P04": [(cron, "*/15 * * * *"), ((spec.get("incremental") or {}).get("cursor_column"), "updated_at"),
                (dst.get("table"), "analytics.orders_raw")],
        "P05": [(src.get("kind"), "kafka"), (src.get("topic"), "shop.clicks"),
                ((spec.get("streaming") or {}).get("enabled"), True),
                ((spec.get("streaming") or {}).get("max_batch_rows"), 1000),
                (float((spec.get("streaming") or {}).get("max_batch_seconds") or 0), 10.0),
                (any(p.get("action") == "mask" and "mail" in p.get("column", "") for p in spec.get("pii") or []), True)],
        "P06": [(src.get("table"), "shop.orders"), (dst.get("table"), "analytics.orders_ru"), (cron, "0 2 * * *")],
        "P07": [(src.get("path"), "products.jsonl"), (dst.get("kind"), "clickhouse"),
                (dst.get("table"), "analytics.products")],
        "P08": [(dst.get("kind"), "file"), (dst.get("format"), "parquet"), (agg.get("period"), "month"),
                ("country" in (agg.get("dimensions") or []), True), (("sum", "amount") in measures, True),
                (("status", "=", "paid") in filters, True)],
        "P11": [(trigger, "webhook"), (src.get("path_param"), "file"), (dst.get("table"), "analytics.landing")],
        "P12": [(dst.get("load_mode"), "merge"), (dst.get("keys"), ["order_id"]),
                (dst.get("table"), "analytics.orders_latest")],
    }.get(cid, [])
    return [f"got {got!r}, expected {want!r}" for got, want in checks if got != want]


def expected_status(cid: str) -> str:
    return {"P09": "needs_clarification", "P10": "refused"}.get(cid, "draft_ready")


@pytest.fixture(scope="module")
def llama():
    if os.environ.get("AIETL_TEST_LLM_URL"):  # a server already running (and warm): reuse it
        yield os.environ["AIETL_TEST_LLM_URL"]
        return
    proc, base = model_server.start()
    yield base
    model_server.stop(proc)


def selected(names, variable: str) -> list:
    """All of ``names``, or those whose name starts with one of the comma-separated prefixes in ``variable``."""
    wanted = [w.strip() for w in os.environ.get(variable, "").split(",") if w.strip()]
    return [n for n in names if not wanted or any(n.startswith(w) for w in wanted)]


@pytest.fixture(scope="module")
def shop(stack_settings):
    from services.demo.load import ensure_demo_data

    return ensure_demo_data(stack_settings)


def _calls(client) -> tuple[int, int]:
    p = client.get("/api/v1/llm/stats").json()["providers"].get(LLM) or {}
    return int(p.get("calls", 0)), int(p.get("errors", 0))


def run_case(client, case: dict) -> dict:
    cid = case["id"].split("-")[0]
    calls0, errors0 = _calls(client)
    started = time.monotonic()
    pid = client.post("/api/v1/pipelines", json={"description": case["request"]}).json()["pipeline_id"]
    state = {}
    while time.monotonic() - started < CASE_TIMEOUT_S:
        state = client.get(f"/api/v1/pipelines/{pid}").json()
        if state.get("status") in TERMINAL:
            break
        time.sleep(2)
    events = client.get(f"/api/v1/pipelines/{pid}/events").json()["events"]
    planned = next((e for e in events if e["type"] in ("PlanProposed", "ClarificationRequested", "RequestRefused")),
                   None)
    usage = (planned or {}).get("payload", {}).get("llm") or {}
    calls, errors = _calls(client)
    status = state.get("status", "timeout")
    problems = [] if status == expected_status(cid) else [f"status {status}: " + json.dumps(
        state.get("working") or {}, ensure_ascii=False)[:400]]
    if status == "draft_ready" and expected_status(cid) == "draft_ready":
        problems += _spec_problems(cid, json.loads(state["versions"][-1]["artifacts"]["spec_json"]))
    return {"id": cid, "expected": expected_status(cid), "status": status, "passed": not problems,
            "problems": problems, "planned_by": usage.get("provider") or ("rules" if status == "refused" else None),
            "plan_seconds": (usage.get("latency_ms") or 0) / 1000, "model_calls": calls - calls0,
            "model_rejected": errors - errors0, "seconds": round(time.monotonic() - started, 1)}


@pytest.mark.parametrize("config", selected(list(CONFIGS), "AIETL_TEST_LLM_CONFIGS"))
def test_public_cases_with_the_real_model(config, llama, shop, stack_settings):
    from services.cli import demo_connections

    description, providers = CONFIGS[config]
    dep = new_deployment(stack_settings, "llmreal", list(WORKERS))
    dep.settings = dep.settings.model_copy(update={"llm_providers_json": json.dumps(providers(llama))})
    dep.start()
    results = []
    try:
        with dep.client() as c:
            c.timeout = 30
            for conn in demo_connections(dep.settings, shop):
                assert c.post("/api/v1/connections", json=conn).status_code in (201, 409)
            for case in [c for c in CASES if c["id"] in selected([c["id"] for c in CASES], "AIETL_TEST_LLM_CASES")]:
                result = run_case(c, case)
                report.record(config, description, result)
                results.append(result)
                print(f"[test-llm] {config}: {result['id']} {result['status']} pass={result['passed']} "
                      f"{result['seconds']} s {result['problems'][:2]}", flush=True)
    finally:
        dep.remove()
    if config.startswith("model first"):
        failed = [r["id"] for r in results if not r["passed"]]
        assert not failed, f"with the builtin as fallback every public case must pass; failed: {failed}"
