"""The acceptance corpus (tests/acceptance/corpus.yaml) is well formed, and the yardstick that compares a
target's rows with a case's expected rows counts what it should."""
from __future__ import annotations

import inspect
import re
from collections import Counter
from datetime import date, datetime
from decimal import Decimal

import pytest
import sqlglot
from sqlglot import exp

from tests.acceptance.expected import FUNCTIONS
from tests.acceptance.rows import compare
from tests.acceptance.run_eval import load_corpus, select, spec_mismatches

CASES = load_corpus()
DRAFTS = [c for c in CASES if c["expect"] == "draft"]
CATEGORIES = {"copy", "filter", "null_filter", "date_range", "aggregate", "top_n", "rename_select", "join",
              "schedule", "incremental", "merge", "file", "streaming", "clarify", "refuse"}
CYRILLIC = re.compile("[а-яА-ЯёЁ]")


def test_size_ids_languages_and_categories():
    assert len(CASES) >= 120
    ids = Counter(c["id"] for c in CASES)
    assert not [i for i, n in ids.items() if n > 1]
    assert {c["category"] for c in CASES} == CATEGORIES
    langs = Counter(c["lang"] for c in CASES)
    assert set(langs) == {"en", "ru"} and langs["ru"] >= 30
    for c in CASES:
        assert bool(CYRILLIC.search(c["text"])) == (c["lang"] == "ru"), c["id"]
        assert c["expect"] in ("draft", "clarify", "refuse") and c["dataset"] in ("shop", "clinic", "none"), c["id"]
    assert {c["dataset"] for c in DRAFTS} == {"shop", "clinic"}
    assert all(c["category"] == c["expect"] for c in CASES if c["expect"] != "draft")


def test_every_draft_names_its_target_and_how_its_rows_are_computed():
    for c in DRAFTS:
        target, expected = c.get("target"), c.get("expected")
        assert target and target["kind"] in ("clickhouse", "postgres", "file"), c["id"]
        assert (target.get("table") if target["kind"] != "file" else target.get("path")), c["id"]
        assert expected and (("sql" in expected) != ("python" in expected)), c["id"]
        assert set(c.get("spec") or {}) <= {"cron", "load_mode", "keys", "cursor", "streaming"}, c["id"]
    locators = Counter((c["target"]["kind"], c["target"].get("table") or c["target"]["path"]) for c in DRAFTS)
    assert not [t for t, n in locators.items() if n > 1]  # cases run in parallel: one target each
    assert not [c["id"] for c in CASES if c["expect"] != "draft" and ("expected" in c or "target" in c)]


def test_expected_sql_is_a_read_only_query_of_the_source_data_sets():
    for c in DRAFTS:
        if "sql" not in c["expected"]:
            continue
        tree = sqlglot.parse_one(c["expected"]["sql"], read="postgres")
        assert isinstance(tree, exp.Select), c["id"]
        schemas = {t.db for t in tree.find_all(exp.Table)}
        assert schemas and schemas <= {c["dataset"]}, (c["id"], schemas)


def test_expected_functions_exist_and_accept_the_case_arguments():
    for c in DRAFTS:
        for part in (c["expected"], c.get("feed") or {}):
            if "python" in part:
                fn = FUNCTIONS[part["python"]]
                inspect.signature(fn).bind(None, **(part.get("args") or {}))
        if c["category"] == "streaming":
            assert c["feed"]["topic"] and c["spec"] == {"streaming": True}, c["id"]


def test_expected_functions_compute_rows_from_the_generated_files(tmp_path):
    from services.demo import clinicdata

    clinicdata.generate(tmp_path / "db", landing_dir=tmp_path)
    cols, rows = FUNCTIONS["lab_results"](tmp_path)
    assert len(rows) == clinicdata.N_LAB_RESULTS and cols[3] == "value"
    assert any(r[3] is None for r in rows) and any(r[6] is None for r in rows)  # NA and "" both NULL
    _, glu = FUNCTIONS["lab_results"](tmp_path, test_code="GLU", value_present=True)
    assert glu and all(r[2] == "GLU" and r[3] is not None for r in glu)
    _, avg = FUNCTIONS["lab_avg_by_test"](tmp_path)
    assert sorted(code for code, _ in avg) == sorted(clinicdata.TESTS)
    _, top = FUNCTIONS["lab_top"](tmp_path, test_code="GLU", n=5)
    assert [r[3] for r in top] == sorted((r[3] for r in glu), reverse=True)[:5]


def test_only_selects_by_id_prefix_category_or_data_set():
    assert [c["id"] for c in select(CASES, "c-agg-01")] == ["c-agg-01"]
    assert {c["category"] for c in select(CASES, "refuse,join")} == {"refuse", "join"}
    assert {c["dataset"] for c in select(CASES, "clinic")} == {"clinic"}
    assert all(c["id"].startswith("s-top") for c in select(CASES, "s-top"))


# -------------------------------------------------------------------------------------------- the yardstick

def test_rows_match_across_engine_spellings_of_the_same_values():
    expected = (["day", "total"], [(date(2026, 1, 1), Decimal("10.50")), (date(2026, 1, 2), None)])
    got_ch = (["created_at", "total"], [(datetime(2026, 1, 2), None), (datetime(2026, 1, 1), 10.5)])
    assert compare(*expected, *got_ch)[0]
    got_csv = (["DAY", "TOTAL"], [("2026-01-01", "10.5"), ("2026-01-02 00:00:00", None)])
    assert compare(*expected, *got_csv, numeric_text=True)[0]
    assert not compare(*expected, *got_csv)[0]  # in a typed target, a number stored as text is wrong data
    assert compare(["avg"], [(Decimal("3.3333333333"),)], ["avg"], [(3.33333,)])[0]
    assert compare(["tags"], [(["a", "b"],)], ["tags"], [('["a", "b"]',)])[0]


def test_rows_that_differ_are_counted_as_different():
    cols = ["order_id", "amount"]
    rows = [(1, Decimal("1.00")), (2, Decimal("2.00"))]
    assert not compare(cols, rows, cols, [(1, 1.0)])[0]  # a row missing
    assert not compare(cols, rows, cols, [(1, 1.0), (2, 2.0), (2, 2.0)])[0]  # a duplicate
    assert not compare(cols, rows, cols, [(1, 1.0), (2, 2.1)])[0]  # a wrong value
    assert not compare(cols, rows, cols, [(1, 1.0), (2, None)])[0]  # NULL is not a number
    assert not compare(cols, rows, ["order_id", "amount", "extra"], [(1, 1, 0), (2, 2, 0)])[0]
    assert not compare(["phone"], [("+79991234567",)], ["phone"], [(79991234567.0,)])[0]  # typed as a number


def test_columns_the_request_names_must_exist_by_name():
    rows = [("paid", 3)]
    assert compare(["status", "n"], rows, ["status", "count"], rows)[0]  # unnamed: matched by position
    ok, why = compare(["status", "n"], rows, ["status", "count"], rows, required=["n"])
    assert not ok and "n" in why


def test_spec_facts_are_checked():
    spec = {"target": {"load_mode": "merge", "keys": ["id"]}, "schedule": {"cron": "0 3 * * *"},
            "incremental": None, "streaming": {"enabled": False}}
    assert spec_mismatches({"cron": "0 3 * * *", "load_mode": "merge", "keys": ["id"]}, spec) == []
    assert len(spec_mismatches({"cron": "0 2 * * *", "cursor": "updated_at", "streaming": True}, spec)) == 3


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] == "refuse"], ids=lambda c: c["id"])
def test_destructive_cases_name_a_change_to_data(case):
    words = ("delete", "drop", "truncate", "update", "wipe", "remove", "set ", "purge", "anonymize",
             "удали", "очисти", "сотри", "обнули")
    assert any(w in case["text"].lower() for w in words), case["text"]


def test_a_new_report_keeps_the_sections_other_tools_maintain_in_the_file():
    from tests.acceptance.run_eval import keep_other_sections

    old = "# old report\n\n<!-- llm-eval:start -->\n## Real model\nrows\n<!-- llm-eval:end -->\n"
    new = keep_other_sections("# new report\n", old)
    assert new.startswith("# new report") and "old report" not in new
    assert new.count("<!-- llm-eval:start -->\n## Real model\nrows\n<!-- llm-eval:end -->") == 1
    assert keep_other_sections("# new\n", "# old, nothing marked\n") == "# new\n"
