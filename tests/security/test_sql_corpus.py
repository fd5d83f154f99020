"""Every statement of the SQL corpus gets its expected verdict from the QA SQL rules (both dialects);
the benign statements in it (and the SQL the spec compiler writes for the public cases) still pass."""
from __future__ import annotations

import pytest

from services.agents.qa import has_errors
from services.agents.qa.sql_rules import check_source_sql, check_target_sql
from tests.security.corpus import load, tally

FILES = ["sql_postgres.yaml", "sql_clickhouse.yaml"]


def verdict(doc: dict, entry: dict) -> tuple[str, list]:
    if entry["check"] == "source":
        findings = check_source_sql(entry["sql"], doc["dialect"])
    else:
        findings = check_target_sql(entry["sql"], doc["dialect"], doc["target_table"])
    return ("block" if has_errors(findings) else "pass"), findings


def test_corpus_is_large_enough():
    n = sum(len(load(f)["statements"]) for f in FILES)
    assert n >= 300, n
    for f in FILES:
        entries = load(f)["statements"]
        assert {e["verdict"] for e in entries} == {"block", "pass"}, f"{f} needs hostile and benign statements"


@pytest.mark.parametrize("name", FILES)
def test_every_statement_gets_its_verdict(name, figures):
    doc = load(name)
    results, wrong = [], []
    for entry in doc["statements"]:
        got, findings = verdict(doc, entry)
        results.append((entry, got))
        if got != entry["verdict"]:
            wrong.append(f"expected {entry['verdict']}, got {got}: {entry['sql']!r} {[str(f) for f in findings]}")
    text = tally(f"SQL corpus {doc['dialect']}", results)
    figures(f"hostile SQL ({doc['dialect']})", text)
    print(text)
    assert not wrong, "\n".join(wrong)


def test_blocked_statements_say_why():
    """A refusal names the rule and the object, so the reflector can repair it."""
    doc = load("sql_postgres.yaml")
    entry = next(e for e in doc["statements"] if "U&\"pg_r" in e["sql"])
    _, findings = verdict(doc, entry)
    assert any("pg_read_file()" in f.message for f in findings), findings


def test_public_case_sql_passes():
    """What the spec compiler generates for the public cases must still pass every SQL rule."""
    import yaml

    from services.spec_compiler import generate_sql
    from services.understanding import compile_request
    from tests.security.corpus import CORPUS

    cases = yaml.safe_load((CORPUS.parents[1] / "fixtures" / "public_cases.yaml").read_text())["cases"]
    columns = [["order_id", "bigint"], ["customer_id", "integer"], ["status", "text"], ["amount", "numeric(12,2)"],
               ["country", "text"], ["email", "text"], ["city", "text"], ["created_at", "timestamp without time zone"],
               ["updated_at", "timestamp without time zone"]]
    dialects = {"postgres", "clickhouse", "sqlite"}
    checked, problems = 0, []
    for case in cases:
        spec = compile_request(case["request"]).get("spec")
        if not spec:
            continue  # the cases that must be refused or clarified
        sql = generate_sql(spec, source_columns=columns)
        src, dst = spec["source"]["kind"], spec["target"]["kind"]
        findings = []
        for key in ("extract_sql", "extract_sql_initial"):
            if sql.get(key) and src in dialects:
                findings += check_source_sql(sql[key], src)
        for stmt in [*(sql.get("target_setup_sql") or []), *([sql["target_ddl"]] if sql.get("target_ddl") else [])]:
            if dst in dialects:
                findings += check_target_sql(stmt, dst, spec["target"].get("table") or "")
        checked += 1
        problems += [f"{case['id']}: {f}" for f in findings if f.is_error]
    assert checked >= 9, checked
    assert not problems, problems
