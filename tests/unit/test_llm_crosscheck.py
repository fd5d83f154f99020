"""A model's plan is checked against what the request states: the names it writes out, and, when the
offline grammar reads the request completely, every fact of that reading (services/llm_router/crosscheck.py).
The wrong answers here are the kinds a real small model gave for the public cases."""
import pytest

from services.llm_router.contract import review_plan
from services.llm_router.crosscheck import anchors, crosscheck_plan

DEFAULTS = {"postgres": "warehouse-pg", "clickhouse": "analytics-ch", "file": "shop-files", "kafka": "events"}
P01 = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders every day at 2 AM"
P03 = ("Copy customers.csv into the PostgreSQL table public.customers, lowercasing emails, removing duplicates "
       "by email and filling an empty city with 'Unknown'")


def ctx(text: str) -> dict:
    return {"text": text, "default_connections": DEFAULTS}


def p01(**target) -> dict:
    return {"outcome": "plan", "spec": {
        "source": {"kind": "postgres", "table": "shop.orders"},
        "target": {"kind": "clickhouse", "table": "analytics.orders", **target},
        "schedule": {"cron": "0 2 * * *"}, "trigger": {"kind": "cron"}}}


def p03(cleaning: list) -> dict:
    return {"outcome": "plan", "spec": {"source": {"kind": "file", "path": "customers.csv"},
                                        # "removing duplicates by email": the offline reading also
                                        # keeps one row per email across runs
                                        "target": {"kind": "postgres", "table": "public.customers",
                                                   "load_mode": "merge", "keys": ["email"]},
                                        "cleaning": cleaning}}


ALL_THREE = [{"op": "lowercase", "column": "email"}, {"op": "dedupe", "column": "email"},
             {"op": "fill_empty", "column": "city", "value": "Unknown"}]


@pytest.mark.parametrize("text,expected", [
    (P01, ["shop.orders", "analytics.orders"]),
    (P03, ["customers.csv", "public.customers"]),
    ("Выгрузи заказы из shop.orders в файл out/orders_2026.parquet", ["out/orders_2026.parquet", "shop.orders"]),
    ("send to ops@example.com, e.g. at 1.5 h, see https://x.example.org/a.b", []),
    ("Stream the Kafka topic shop.clicks into analytics.clicks", ["shop.clicks", "analytics.clicks"]),
])
def test_anchors_are_the_names_a_request_writes_out(text, expected):
    assert anchors(text) == expected


def test_a_correct_plan_passes():
    assert review_plan(p01(), ctx(P01)).ok
    assert review_plan(p03(ALL_THREE), ctx(P03)).ok


def test_a_target_without_its_schema_is_sent_back_naming_the_written_name():
    verdict = review_plan(p01(table="orders"), ctx(P01))
    assert not verdict.ok
    assert any("'analytics.orders'" in e for e in verdict.errors), verdict.errors
    assert "spec.target.table" in verdict.fields()


def test_a_cleaning_step_left_out_is_named():
    verdict = review_plan(p03(ALL_THREE[:2]), ctx(P03))
    assert [e for e in verdict.errors if e.startswith("spec.cleaning:")] == [
        "spec.cleaning: the request asks for ('fill_empty', 'city', 'Unknown')"]


def test_an_invented_filter_and_a_wrong_schedule_are_named():
    wrong = p01()
    wrong["spec"]["filters"] = [{"column": "status", "op": "=", "value": "paid"}]
    wrong["spec"]["schedule"] = {"cron": "0 3 * * *"}
    errors = review_plan(wrong, ctx(P01)).errors
    assert "spec.filters: ('status', '=', 'paid') is not in the request" in errors
    assert any(e.startswith("spec.schedule.cron: the request says '0 2 * * *'") for e in errors)


def test_a_target_other_than_the_written_one_is_refused_even_when_the_grammar_cannot_read_the_request():
    text = "Pull the zorblat ledger from PG shop.ledger into ClickHouse analytics.ledger_copy"  # an unknown word
    wrong = {"outcome": "plan", "spec": {"source": {"kind": "postgres", "table": "shop.ledger"},
                                         "target": {"kind": "clickhouse", "table": "analytics.ledger"}}}
    assert crosscheck_plan(wrong, wrong["spec"], ctx(text)) == [
        "spec: the request names 'analytics.ledger_copy'; use it as the source, the target or a join table, "
        "exactly as written"]
    right = {"outcome": "plan", "spec": {**wrong["spec"], "target": {"kind": "clickhouse",
                                                                     "table": "analytics.ledger_copy"}}}
    assert crosscheck_plan(right, right["spec"], ctx(text)) == []


def test_a_question_about_a_complete_request_is_not_an_answer():
    question = {"outcome": "clarify", "question": "Which table?"}
    assert review_plan(question, ctx(P01)).fields() == ["outcome"]
    assert review_plan(question, ctx("Move some data")).ok  # the grammar asks too: the model may ask


def test_without_the_request_text_nothing_is_crosschecked():
    assert review_plan(p01(table="orders"), {"default_connections": DEFAULTS}).ok
