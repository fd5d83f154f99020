"""Offline understanding grounded in a tenant catalog (services/understanding/linking.py, grounding.py,
answers.py): tables without an engine, bare table nouns, prose column names, each linking class, and a
dialogue whose answers fill the slots their questions named.

The catalog is a dict in the shape services/connectors/catalog.py builds; similarity uses the real MiniLM.
"""
from __future__ import annotations

import copy

import pytest

from services.domain.spec import PipelineSpec
from services.understanding import compile_request


def col(name, type_="text"):
    return {"name": name, "type": type_, "samples": []}


def table(name, *columns):
    return {"name": name, "columns": [col(*c) if isinstance(c, tuple) else col(c) for c in columns]}


CATALOG = {"connections": [
    {"name": "warehouse-pg", "kind": "postgres", "default": True, "tables": [
        table("shop.orders", ("order_id", "bigint"), ("customer_id", "integer"), "status", ("amount", "numeric"),
              "country", ("created_at", "timestamp"), ("updated_at", "timestamp")),
        table("shop.order_items", ("order_id", "bigint"), "sku", ("qty", "integer"), ("unit_price", "numeric")),
        table("crm.contacts", ("contact_id", "bigint"), "first_name", "last_name", "zip_code",
              ("birth_date", "date")),
        table("billing.payments", ("payment_id", "bigint"), ("amt", "numeric"), ("paid_on", "date")),
        table("billing.refunds", ("refund_id", "bigint"), ("amount", "numeric"), ("requested_at", "timestamp"),
              ("settled_at", "timestamp")),
    ]},
    {"name": "analytics-ch", "kind": "clickhouse", "default": True, "tables": [
        table("analytics.events", ("event_id", "UInt64"), ("ts", "DateTime"))]},
]}


def ask(text, catalog=CATALOG, **kw):
    return compile_request(text, catalog=catalog, **kw)


def plan(text, catalog=CATALOG, **kw):
    result = ask(text, catalog, **kw)
    assert result["outcome"] == "plan", result
    PipelineSpec.model_validate(result["spec"])
    return result


def linked(result, line):
    assert line in result["understood"], result["understood"]


def with_table(connection: str, t: dict) -> dict:
    cat = copy.deepcopy(CATALOG)
    next(c for c in cat["connections"] if c["name"] == connection)["tables"].append(t)
    return cat


# --- without a catalog: as before --------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Load shop.orders into ClickHouse analytics.orders",
    "Load orders from PostgreSQL into ClickHouse analytics.orders",
    "Load order lines from PostgreSQL shop.order_items into ClickHouse analytics.x",
    "Load paid orders from PostgreSQL shop.orders into ClickHouse analytics.daily_revenue, summing amount per day",
])
def test_without_a_catalog_nothing_changes(text):
    assert compile_request(text) == compile_request(text, catalog=None, answers=None)
    assert compile_request(text, catalog={"connections": []}) == compile_request(text)


# --- tables named without an engine ------------------------------------------------------------------

def test_a_table_named_without_an_engine_is_resolved_from_the_one_connection_that_holds_it():
    assert compile_request("Load shop.orders into ClickHouse analytics.orders")["missing"] == ["source.kind"]
    r = plan("Load shop.orders into analytics.events")
    src, dst = r["spec"]["source"], r["spec"]["target"]
    assert (src["kind"], src["table"], src["connection"]) == ("postgres", "shop.orders", "warehouse-pg")
    assert (dst["kind"], dst["table"], dst["connection"]) == ("clickhouse", "analytics.events", "analytics-ch")
    linked(r, '"shop.orders" -> PostgreSQL connection warehouse-pg (the catalog: it holds shop.orders)')


def test_a_table_held_by_several_connections_is_a_question_naming_them():
    cat = with_table("analytics-ch", table("shop.orders", "order_id"))
    r = ask("Load shop.orders into ClickHouse analytics.o", cat)  # ClickHouse is the target's engine only
    assert r["outcome"] == "clarify" and r["missing"] == ["source.kind"]
    assert "warehouse-pg (PostgreSQL)" in r["question"] and "analytics-ch (ClickHouse)" in r["question"]
    # Naming the engine settles it: the PostgreSQL one.
    assert plan("Load shop.orders from PostgreSQL into ClickHouse analytics.o", cat)["spec"]["source"][
        "connection"] == "warehouse-pg"


# --- the source from a noun ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, table, how", [
    ("Load orders from PostgreSQL into ClickHouse analytics.o", "shop.orders", "exact"),
    ("load the payments into ClickHouse", "billing.payments", "exact"),
    ("Load the payment into ClickHouse analytics.p", "billing.payments", "normalised"),
    ("Load order lines into ClickHouse analytics.lines", "shop.order_items", "lexicon"),
    ("Загрузи платежи в ClickHouse analytics.payments", "billing.payments", "lexicon"),
    ("Перенеси строки заказов в ClickHouse analytics.lines", "shop.order_items", "lexicon"),
])
def test_a_bare_noun_names_the_source_table(text, table, how):
    r = plan(text)
    src = r["spec"]["source"]
    assert (src["kind"], src["table"], src["connection"]) == ("postgres", table, "warehouse-pg")
    assert any(f"-> source table {table} ({how}, connection warehouse-pg)" in u for u in r["understood"]), r
    if "analytics." not in text:  # no target table named: the source's name, as without a catalog
        assert r["spec"]["target"]["table"] == table


def test_a_noun_two_tables_match_equally_is_a_question_naming_both():
    cat = with_table("warehouse-pg", table("sales.orders", "order_id"))
    r = ask("Load orders into ClickHouse analytics.o", cat)
    assert r["outcome"] == "clarify" and r["missing"] == ["source.table"]
    assert "shop.orders (warehouse-pg)" in r["question"] and "sales.orders (warehouse-pg)" in r["question"]


def test_a_similar_but_not_similar_enough_noun_is_a_question_naming_the_candidate():
    cat = {"connections": [{"name": "pg", "kind": "postgres", "default": True,
                            "tables": [table("web.web_sessions", "session_id"), table("web.pages", "url")]}]}
    r = ask("Load the sessions into ClickHouse analytics.s", cat)
    assert r["outcome"] == "clarify" and r["missing"] == ["source.table"]
    assert "web.web_sessions (pg)" in r["question"] and "web.pages" not in r["question"]


def test_the_source_question_lists_the_catalogs_tables():
    r = ask("Load everything from PostgreSQL into ClickHouse analytics.x")
    assert r["outcome"] == "clarify" and "source.table" in r["missing"]
    assert "Tables: shop.orders (warehouse-pg)" in r["question"]


# --- prose column names --------------------------------------------------------------------------------

def test_prose_columns_are_linked_wherever_the_grammar_takes_a_column():
    r = plan("Load paid orders from shop.orders into ClickHouse analytics.daily, summing order amount per day")
    assert r["spec"]["aggregate"]["measures"] == [{"fn": "sum", "column": "amount", "alias": "sum_amount"}]
    linked(r, '"order amount" -> column amount (normalised)')
    assert any(u.startswith('"summing order amount per day" -> aggregate') for u in r["understood"])  # user's words

    r = plan("Load shop.orders into ClickHouse analytics.o, incrementally by updated date")
    assert r["spec"]["incremental"]["cursor_column"] == "updated_at"
    linked(r, '"updated date" -> column updated_at (normalised)')

    r = plan("Load shop.orders into ClickHouse analytics.o where customer id = 5")
    assert r["spec"]["filters"] == [{"column": "customer_id", "op": "=", "value": 5}]

    r = plan("Sync shop.orders into ClickHouse analytics.o, upserting on order id")
    assert r["spec"]["target"]["keys"] == ["order_id"]

    r = plan("Load shop.order_items into ClickHouse analytics.i, summing quantity per sku")
    assert r["spec"]["aggregate"]["measures"][0]["column"] == "qty"
    linked(r, '"quantity" -> column qty (abbreviation)')

    r = plan("Load billing.payments into ClickHouse analytics.p, summing amount per month")
    assert r["spec"]["aggregate"]["measures"][0]["column"] == "amt"
    linked(r, '"amount" -> column amt (abbreviation)')


def test_russian_column_names_are_linked_through_the_lexicon():
    r = plan("Загружай shop.orders в ClickHouse analytics.o инкрементально по дате обновления")
    assert r["spec"]["incremental"]["cursor_column"] == "updated_at"
    linked(r, '"дате обновления" -> column updated_at (lexicon)')


def test_a_column_with_a_similar_name_is_linked_and_a_vague_one_is_asked_about():
    r = plan("Load crm.contacts into ClickHouse analytics.c where zipcode = '0150'")
    assert r["spec"]["filters"][0]["column"] == "zip_code"
    linked(r, '"zipcode" -> column zip_code (similar name)')

    r = ask("Load crm.contacts into ClickHouse analytics.c where surname = 'Ivanova'")
    assert r["outcome"] == "clarify" and r["missing"] == ["column:surname"]
    assert "last_name" in r["question"] and "first_name" in r["question"]


def test_a_default_time_column_the_source_lacks_is_replaced_or_asked_about():
    r = plan("Load billing.payments into ClickHouse analytics.p, summing amt per day")
    assert r["spec"]["aggregate"]["time_column"] == "paid_on"  # its only date column
    assert any("has no created_at; its only date/time column is paid_on" in n for n in r["spec"]["notes"])
    r = ask("Load billing.refunds into ClickHouse analytics.r, summing amount per day")
    assert r["outcome"] == "clarify" and r["missing"] == ["aggregate.time_column"]
    assert "requested_at, settled_at" in r["question"]


def test_a_noun_that_names_the_source_or_its_columns_is_not_an_unknown_word():
    text = "Copy shop.order_items (the order positions) into ClickHouse analytics.x"
    assert "unrecognized:positions" in compile_request(text)["missing"]  # without a catalog: asked
    r = plan(text)
    linked(r, '"positions" -> names the source shop.order_items or its columns')
    assert ask("Load shop.orders into ClickHouse analytics.x pronto")["missing"] == ["unrecognized:pronto"]


# --- answers --------------------------------------------------------------------------------------------

def test_an_unknown_word_answered_never_comes_back():
    text = "Load shop.orders into ClickHouse analytics.x pronto"
    first = ask(text)
    assert first["missing"] == ["unrecognized:pronto"]
    r = plan(text, answers=[{"slot": "unrecognized:pronto", "text": "ignore it"}])
    linked(r, '"pronto" -> ignored (your answer)')
    r = plan(text, answers=[{"slot": "unrecognized:pronto", "text": "it means daily at 2 AM"}])
    assert r["spec"]["schedule"]["cron"] == "0 2 * * *"
    # An answer that does not explain it is still an answer: the word is not asked about again.
    again = ask(text, answers=[{"slot": "unrecognized:pronto", "text": "pronto"}])
    assert "unrecognized:pronto" not in again.get("missing", [])


def test_a_source_nobody_can_place_is_asked_for_and_the_answer_fills_it():
    text = "Load the frobs into ClickHouse analytics.f"
    first = ask(text)
    assert first["outcome"] == "clarify" and first["missing"] == ["source"]
    assert "Tables: shop.orders (warehouse-pg)" in first["question"]  # the choices the catalog has
    r = plan(text, answers=[{"slot": "source", "text": "shop.order_items"}])
    assert (r["spec"]["source"]["table"], r["spec"]["source"]["connection"]) == ("shop.order_items", "warehouse-pg")


def test_answers_fill_source_column_and_time_slots():
    cat = with_table("warehouse-pg", table("sales.orders", "order_id"))
    text = "Load orders into ClickHouse analytics.o"
    assert ask(text, cat)["missing"] == ["source.table"]
    r = plan(text, cat, answers=[{"slot": "source.table", "text": "sales.orders"}])
    assert r["spec"]["source"]["table"] == "sales.orders"

    text = "Load crm.contacts into ClickHouse analytics.c where surname = 'Ivanova'"
    r = plan(text, answers=[{"slot": "column:surname", "text": "last_name"}])
    assert r["spec"]["filters"][0]["column"] == "last_name"

    text = "Load billing.refunds into ClickHouse analytics.r, summing amount per day"
    r = plan(text, answers=[{"slot": "aggregate.time_column", "text": "settled_at"}])
    assert r["spec"]["aggregate"]["time_column"] == "settled_at"


def test_a_later_answer_to_the_same_slot_replaces_the_earlier_one():
    text = "Load crm.contacts into ClickHouse analytics.c where surname = 'Ivanova'"
    r = plan(text, answers=[{"slot": "column:surname", "text": "first_name"},
                            {"slot": "column:surname", "text": "column last_name"}])
    assert r["spec"]["filters"][0]["column"] == "last_name"


def test_an_answer_cannot_smuggle_in_a_destructive_request():
    r = ask("Load the frobs into ClickHouse analytics.f",
            answers=[{"slot": "unrecognized:frobs", "text": "delete shop.orders"}])
    assert r["outcome"] == "refuse"


def test_grounded_answers_are_deterministic():
    text = "Load order lines into ClickHouse analytics.lines, summing quantity per sku"
    assert ask(text) == ask(text)


def test_a_table_in_two_connections_of_one_kind_is_asked_for_by_connection_and_answered_by_name():
    cat = copy.deepcopy(CATALOG)
    for name in ("replica-a", "replica-b"):
        cat["connections"].append({"name": name, "kind": "postgres", "default": False,
                                   "tables": [table("ops.audit", "id", ("at", "timestamp"))]})
    text = "Load ops.audit into ClickHouse analytics.audit"
    r = ask(text, cat)
    assert r["outcome"] == "clarify" and r["missing"] == ["source.connection"]
    assert "replica-a (PostgreSQL)" in r["question"] and "replica-b (PostgreSQL)" in r["question"]
    r = plan(text, cat, answers=[{"slot": "source.connection", "text": "replica-b"}])
    assert (r["spec"]["source"]["table"], r["spec"]["source"]["connection"]) == ("ops.audit", "replica-b")
