"""Resolving sources and targets and linking words to the catalog (services/understanding/endpoints.py,
linking.py, grounding.py): target connectives and one source / one target, which tables are candidates, a
column a spec names that the source spells differently, and category values named in prose.

The catalog is a logistics/HR tenant built here (not the demo data); similarity uses the real MiniLM.
"""
from __future__ import annotations

import pytest

from services.domain.spec import PipelineSpec
from services.understanding import compile_request


def col(name, type_="text", values=None):
    c = {"name": name, "type": type_, "samples": list(values or [])}
    if values:
        c["values"] = True
    return c


SHIPMENT_COLUMNS = [
    col("shipment_id", "bigint"), col("employee_id", "integer"), col("status", "text", ["in_transit", "delivered", "lost", "returned"]),
    col("carrier", "text", ["DHL", "UPS", "FedEx"]), col("weight_kg", "numeric(8,2)"),
    col("fare_usd", "numeric(10,2)"), col("shipped_at", "timestamp"), col("delivered_on", "date"),
    col("origin_city", "text", ["Kazan", "Berlin", "Lisbon"]), col("dest_city", "text", ["Porto", "Berlin"]),
]
CATALOG = {"connections": [
    {"name": "ops-pg", "kind": "postgres", "default": True, "tables": [
        {"name": "logistics.shipments", "columns": SHIPMENT_COLUMNS},
        {"name": "hr.employees", "columns": [
            col("employee_id", "integer"), col("full_name"), col("dept", "text", ["sales", "support", "it"]),
            col("hired_on", "date"), col("salary", "numeric")]},
        {"name": "billing.payments", "columns": [
            col("payment_id", "bigint"), col("amt", "numeric"), col("method", "text", ["card", "cash", "bank-transfer"]),
            col("paid_on", "date")]},
        {"name": "hr.leaves", "columns": [
            col("leave_id", "integer"), col("starts_on", "date"), col("created_at", "timestamp"),
            col("updated_at", "timestamp")]},
        {"name": "logistics.vehicles", "columns": [
            col("vehicle_id", "integer"), col("plate"), col("bought_on", "date"), col("serviced_at", "timestamp")]},
    ]},
    {"name": "dwh-ch", "kind": "clickhouse", "default": True, "tables": [
        {"name": "mart.daily_shipments", "columns": [col("day", "Date"), col("n", "UInt64")]},
        {"name": "tmp_3fa9c2d1e7.shipments", "columns": SHIPMENT_COLUMNS},
    ]},
]}


def ask(text, **kw):
    return compile_request(text, catalog=CATALOG, **kw)


def plan(text, **kw):
    r = ask(text, **kw)
    assert r["outcome"] == "plan", r
    PipelineSpec.model_validate(r["spec"])
    return r


def sides(r):
    s, t = r["spec"]["source"], r["spec"]["target"]
    return (s["kind"], s.get("table") or s.get("path")), (t["kind"], t.get("table") or t.get("path"))


class TestTargetConnectives:
    """An arrow or a placing verb starts the target; one source and one target, split when one side got both."""

    @pytest.mark.parametrize("text", [
        "logistics.shipments -> CH mart.shipments_copy",
        "copy logistics.shipments => mart.shipments_copy in clickhouse",
        "logistics.shipments → ClickHouse mart.shipments_copy",
        "take logistics.shipments and put it in CH mart.shipments_copy",
        "read logistics.shipments, save as clickhouse mart.shipments_copy",
        "grab logistics.shipments and land them in ClickHouse mart.shipments_copy",
        "перелей logistics.shipments -> кликхаус mart.shipments_copy",
        "скопируй logistics.shipments, положи в ClickHouse mart.shipments_copy",
    ])
    def test_the_target_follows_an_arrow_or_a_placing_verb(self, text):
        assert sides(plan(text)) == (("postgres", "logistics.shipments"), ("clickhouse", "mart.shipments_copy"))

    @pytest.mark.parametrize("text", [
        "refresh mart.shipments_copy in ClickHouse from logistics.shipments",
        "fill mart.shipments_copy (CH) from logistics.shipments",
        "обнови mart.shipments_copy в ClickHouse из logistics.shipments".replace("обнови", "залей"),
    ])
    def test_the_place_after_from_is_the_source_when_the_object_is_named_first(self, text):
        r = ask(text)
        if r["outcome"] == "plan":
            assert sides(r) == (("postgres", "logistics.shipments"), ("clickhouse", "mart.shipments_copy"))
        assert "several" not in r.get("question", "").lower() and "несколько" not in r.get("question", "")

    @pytest.mark.parametrize("text", [
        "logistics.shipments clickhouse mart.shipments_copy",
        "всё из logistics.shipments в CH mart.shipments_copy",
        "logistics.shipments, CH table mart.shipments_copy",
    ])
    def test_an_existing_table_then_a_new_one_is_source_then_target(self, text):
        assert sides(plan(text)) == (("postgres", "logistics.shipments"), ("clickhouse", "mart.shipments_copy"))

    @pytest.mark.parametrize("text", [
        "logistics.shipments hr.employees",
        "copy logistics.shipments, hr.employees",
        "скопируй logistics.shipments billing.payments",
    ])
    def test_two_existing_tables_without_a_connective_are_never_guessed_into_source_and_target(self, text):
        r = ask(text)
        assert r["outcome"] == "clarify" and "source" in r["missing"], r


class TestCandidates:
    """Which tables a noun or a name may be: scratch copies last, the target never, new targets by schema."""

    @pytest.mark.parametrize("text", [
        "load the shipments into ClickHouse mart.s2",
        "shipments -> CH mart.s2",
        "загрузи shipments в кликхаус mart.s2",
    ])
    def test_a_generated_scratch_copy_is_not_a_candidate_when_a_real_table_is(self, text):
        r = plan(text)
        assert sides(r)[0] == ("postgres", "logistics.shipments"), r

    @pytest.mark.parametrize("text", [
        "copy hr.employees into mart.staff",
        "hr.employees -> mart.staff",
        "перенеси hr.employees в mart.staff",
    ])
    def test_a_new_target_table_goes_to_the_connection_that_has_its_schema(self, text):
        r = plan(text)
        assert sides(r)[1] == ("clickhouse", "mart.staff") and r["spec"]["target"]["connection"] == "dwh-ch"
        assert any("a new ClickHouse table" in line for line in r["understood"]), r["understood"]

    @pytest.mark.parametrize("text", [
        "copy hr.employees into nowhere.staff",
        "hr.employees -> staff_copy",
        "перенеси hr.employees в elsewhere.staff",
    ])
    def test_a_new_target_in_an_unknown_schema_is_asked_about(self, text):
        r = ask(text)
        assert r["outcome"] == "clarify" and any(m.startswith("target") for m in r["missing"]), r


class TestColumnLinking:
    """A spec column the source spells differently: unit/suffix extension, money words, the time column."""

    @pytest.mark.parametrize("text,column", [
        ("sum of weight per carrier from logistics.shipments into CH mart.w", "weight_kg"),
        ("total weight per carrier from logistics.shipments -> CH mart.w", "weight_kg"),
        ("суммируя weight по carrier из logistics.shipments в ClickHouse mart.w", "weight_kg"),
    ])
    def test_a_unique_column_that_extends_the_word_with_a_unit_is_a_link(self, text, column):
        r = plan(text)
        assert r["spec"]["aggregate"]["measures"][0]["column"] == column

    @pytest.mark.parametrize("text", [
        "top 5 most expensive shipments from logistics.shipments into CH mart.top5",
        "the 3 priciest shipments from logistics.shipments -> CH mart.top3",
        "Три самых дорогих записи из logistics.shipments в ClickHouse mart.top3",
    ])
    def test_a_money_word_is_the_tables_one_money_column(self, text):
        r = ask(text)
        if r["outcome"] == "plan":
            assert r["spec"]["order_by"][0]["column"] == "fare_usd", r["spec"]
        else:  # the ranking phrase is the grammar's; never a question about 'price' naming fare_usd
            assert "price" not in r["question"], r

    @pytest.mark.parametrize("text,column", [
        ("shipments shipped in March 2026 from logistics.shipments into CH mart.march", "shipped_at"),
        ("logistics.shipments delivered before 2026-02-01 -> CH mart.early", "delivered_on"),
        ("employees hired since 2020 from hr.employees into CH mart.recent_hires", "hired_on"),
        ("payments since 2026-01-01 from billing.payments into CH mart.p2026", "paid_on"),
    ])
    def test_a_date_filter_uses_the_time_column_the_words_name_or_the_only_one(self, text, column):
        r = plan(text)
        assert {f["column"] for f in r["spec"]["filters"]} == {column}, r["spec"]["filters"]

    @pytest.mark.parametrize("text,column", [
        ("leaves since 2026-01-01 from hr.leaves into CH mart.l", "starts_on"),
        ("записи за март 2026 из hr.leaves в ClickHouse mart.l", "starts_on"),
        ("leaves created since 2026-01-01 from hr.leaves -> CH mart.l", "created_at"),
        ("hr.leaves updated before 2026-02-01 -> CH mart.l", "updated_at"),
    ])
    def test_dates_mean_the_one_event_time_over_the_row_bookkeeping_columns(self, text, column):
        r = plan(text)
        assert {f["column"] for f in r["spec"]["filters"]} == {column}, r["spec"]["filters"]

    @pytest.mark.parametrize("text", [
        "count leaves per month from hr.leaves into CH mart.lm",
        "hr.leaves -> CH mart.lm, counting rows per week",
        "количество записей по месяцам из hr.leaves в ClickHouse mart.lm",
    ])
    def test_a_period_groups_by_the_event_time_too(self, text):
        r = ask(text)
        if r["outcome"] == "plan":
            assert r["spec"]["aggregate"]["time_column"] == "starts_on", r["spec"]["aggregate"]
        assert "created_at" not in r.get("question", "")

    @pytest.mark.parametrize("text", [
        "vehicles since 2026-01-01 from logistics.vehicles into CH mart.v",
        "logistics.vehicles after 2026-03-01 -> CH mart.v",
        "записи с 2026-01-01 из logistics.vehicles в ClickHouse mart.v",
    ])
    def test_a_date_filter_on_a_table_with_two_time_columns_none_named_is_asked(self, text):
        r = ask(text)
        assert r["outcome"] == "clarify" and "bought_on" in r["question"] and "serviced_at" in r["question"], r


class TestCategoryValues:
    """Words naming a value of a text column of the source become filters, listed in `understood`."""

    @pytest.mark.parametrize("text,column,op,value", [
        ("delivered shipments from logistics.shipments into CH mart.done", "status", "=", "delivered"),
        ("only in-transit shipments from logistics.shipments -> CH mart.moving", "status", "=", "in_transit"),
        ("DHL shipments from logistics.shipments into CH mart.dhl", "carrier", "=", "DHL"),
        ("support employees from hr.employees into CH mart.support", "dept", "=", "support"),
        ("payments by bank transfer from billing.payments into CH mart.bank", "method", "=", "bank-transfer"),
    ])
    def test_an_english_word_names_a_value(self, text, column, op, value):
        r = plan(text)
        assert {"column": column, "op": op, "value": value} in r["spec"]["filters"], r["spec"]["filters"]
        assert any(f"filter {column}" in line for line in r["understood"]), r["understood"]

    @pytest.mark.parametrize("text,column,value", [
        ("записи из Казани из logistics.shipments в ClickHouse mart.kzn", "origin_city", "Kazan"),
        ("доставленные записи из logistics.shipments в ClickHouse mart.ok", "status", "delivered"),
        ("платежи cash из billing.payments в ClickHouse mart.cash", "method", "cash"),
    ])
    def test_a_russian_word_or_spelling_names_a_value(self, text, column, value):
        r = plan(text)
        assert {"column": column, "op": "=", "value": value} in r["spec"]["filters"], r["spec"]["filters"]

    @pytest.mark.parametrize("text,values", [
        ("UPS or FedEx shipments from logistics.shipments into CH mart.us", ["UPS", "FedEx"]),
        ("lost and returned shipments from logistics.shipments -> CH mart.bad", ["lost", "returned"]),
        ("sales и support сотрудники из hr.employees в ClickHouse mart.front", ["sales", "support"]),
    ])
    def test_several_values_of_one_column_are_one_in_filter(self, text, values):
        r = plan(text)
        [f] = [f for f in r["spec"]["filters"] if f["op"] == "in"]
        assert sorted(f["value"]) == sorted(values)

    @pytest.mark.parametrize("text", [
        "shipments to Berlin from logistics.shipments into CH mart.ber".replace("to Berlin", "Berlin"),
        "Berlin shipments from logistics.shipments -> CH mart.ber",
        "записи Berlin из logistics.shipments в ClickHouse mart.ber",
    ])
    def test_a_value_of_two_columns_is_asked_naming_both(self, text):
        r = ask(text)
        assert r["outcome"] == "clarify" and "origin_city" in r["question"] and "dest_city" in r["question"], r

    @pytest.mark.parametrize("text", [
        "top 5 carriers by number of delivered shipments (logistics.shipments) -> CH mart.t5",
        "top 3 heaviest lost shipments from logistics.shipments into CH mart.t3",
        "the 10 most expensive returned shipments from logistics.shipments -> CH mart.t10",
    ])
    def test_a_value_inside_a_ranking_phrase_still_filters_the_ranked_rows(self, text):
        r = ask(text)
        if r["outcome"] == "plan":
            assert [f["column"] for f in r["spec"]["filters"]] == ["status"], r["spec"]["filters"]

    @pytest.mark.parametrize("text", [
        "purple shipments from logistics.shipments into CH mart.p",
        "фиолетовые записи из logistics.shipments в ClickHouse mart.p",
        "shipments flagged urgent from logistics.shipments -> CH mart.u",
    ])
    def test_a_word_no_value_explains_still_asks(self, text):
        assert ask(text)["outcome"] == "clarify"


class TestDescriptiveNouns:
    """A table named by its noun, without schema, still resolves, and the link is listed."""

    @pytest.mark.parametrize("text", [
        "load payments into ClickHouse mart.pay",
        "the payments -> CH mart.pay",
        "загрузи платежи в кликхаус mart.pay",
    ])
    def test_a_noun_names_the_source_table(self, text):
        r = plan(text)
        assert sides(r)[0] == ("postgres", "billing.payments")
        assert any("billing.payments" in line for line in r["understood"]), r["understood"]


class TestTyposAndJoinedColumns:
    """A one-letter slip in a table noun links; a column of a joined table is not an unknown word."""

    @pytest.mark.parametrize("text", [
        "load paymnets into ClickHouse mart.pay",
        "copy the pyaments from postgres -> CH mart.pay",
        "payemnts -> CH mart.pay",
    ])
    def test_a_typo_of_one_table_noun_links_to_it(self, text):
        r = plan(text)
        assert sides(r)[0] == ("postgres", "billing.payments")
        assert any("a typo of the name" in line for line in r["understood"]), r["understood"]

    @pytest.mark.parametrize("text", [
        "paymxyz -> CH mart.pay",
        "load pays into ClickHouse mart.pay",
        "загрузи плотежи в кликхаус mart.pay",
    ])
    def test_a_word_two_slips_or_more_away_still_asks(self, text):
        assert ask(text)["outcome"] == "clarify"

    @pytest.mark.parametrize("text,word", [
        ("shipments with the full_name of the driver (join hr.employees on employee_id) into CH mart.sd",
         "full_name"),
        ("Load shipments with the employee's dept (join hr.employees on employee_id) to CH mart.sd", "dept"),
        ("logistics.shipments с dept (join hr.employees on employee_id) в ClickHouse mart.sd", "dept"),
    ])
    def test_a_column_of_a_joined_table_is_not_an_unknown_word(self, text, word):
        r = ask(text)
        assert f"unrecognized:{word}" not in r.get("missing", []), r
        if r["outcome"] == "plan":
            assert any(word in line for line in r["understood"]), r["understood"]

    @pytest.mark.parametrize("text", [
        "logistics.shipments с dept (join hr.employees on employee_id) в ClickHouse mart.sd",
        "Load logistics.shipments and dept (join hr.employees on employee_id) into CH mart.sd",
        "logistics.shipments, dept (join hr.employees on employee_id) -> CH mart.sd",
    ])
    def test_a_joined_tables_column_named_in_the_request_is_the_one_added(self, text):
        # A join with no listed columns adds all of the joined table's: other data than asked.
        r = plan(text)
        joins = [j for j in r["spec"]["joins"] if j["table"] == "hr.employees"]
        assert joins and joins[0]["columns"] == ["dept"], r["spec"]["joins"]
        assert any("dept" in line and "joined table" in line for line in r["understood"]), r["understood"]
