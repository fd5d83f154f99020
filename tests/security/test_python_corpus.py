"""Every program of the Python corpus gets its expected verdict: the static rules and, independently, the
sandbox (a program the rules flag is run anyway, so each layer is shown to hold on its own)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from services.agents.qa import has_errors
from services.agents.qa.python_rules import check_transform_code
from services.agents.qa.sandbox import run_transform
from tests.security.corpus import load, tally

ROWS = [{"id": 1, "email": " Ada@Example.com "}, {"id": 2, "email": "bob@x.org"}]


def layers(code: str) -> tuple[bool, object]:
    static_blocked = has_errors(check_transform_code(code))
    result = run_transform(code, ROWS, timeout_s=4, cpu_s=2, memory_mb=256)
    return static_blocked, result


def test_corpus_is_large_enough():
    programs = load("python.yaml")["programs"]
    assert len(programs) >= 120, len(programs)
    assert {p["verdict"] for p in programs} == {"block", "pass"}


def test_every_program_gets_its_verdict(figures):
    results, wrong = [], []
    programs = load("python.yaml")["programs"]
    with ThreadPoolExecutor(max_workers=4) as pool:  # each run is a child process; most of its time is start-up
        outcomes = list(pool.map(lambda p: layers(p["code"]), programs))
    for entry, (static_blocked, run) in zip(programs, outcomes):
        layer = entry.get("layer", "both")
        if entry["verdict"] == "pass":
            ok = not static_blocked and run.ok
        elif layer == "static":
            ok = static_blocked
        elif layer == "runtime":
            ok = not run.ok
        else:
            ok = static_blocked and not run.ok
        got = entry["verdict"] if ok else ("pass" if entry["verdict"] == "block" else "block")
        results.append((entry, got))
        if not ok:
            wrong.append(f"{entry['class']}: static blocked={static_blocked}, run ok={run.ok} ({run.error}) "
                         f"rows={str(run.rows)[:200]}\n{entry['code']}")
        if run.ok:  # whatever the verdict, nothing that ran may carry the child's real environment out
            assert "/work" not in str(run.rows) and "leak" not in str(run.rows), entry["code"]
    text = tally("Python corpus", results)
    figures("hostile Python transforms", text)
    print(text)
    assert not wrong, "\n\n".join(wrong)
