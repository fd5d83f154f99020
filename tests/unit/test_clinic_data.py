"""The clinic data set (services.demo.clinicdata): the same seed gives the same bytes, and the missing
values are where the acceptance corpus relies on them (NULL-heavy columns; NA and empty markers in the
export, numeric columns included)."""
from __future__ import annotations

import csv
from collections import Counter

import pytest

from services.demo import clinicdata


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return clinicdata.generate(tmp_path_factory.mktemp("clinic"))


def _rows(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(data, tmp_path):
    again = clinicdata.generate(tmp_path / "again")
    other = clinicdata.generate(tmp_path / "other", seed=clinicdata.DEFAULT_SEED + 1)
    for kind, path in data["paths"].items():
        assert again["paths"][kind].read_bytes() == path.read_bytes(), kind
    assert other["paths"]["appointments"].read_bytes() != data["paths"]["appointments"].read_bytes()
    assert again["counts"] == data["counts"]


def test_counts_and_the_landing_file_goes_where_it_is_asked(data, tmp_path):
    assert data["counts"]["doctors"] == clinicdata.N_DOCTORS
    assert data["counts"]["patients"] == clinicdata.N_PATIENTS
    assert data["counts"]["appointments"] == clinicdata.N_APPOINTMENTS
    assert data["counts"]["lab_results"] == clinicdata.N_LAB_RESULTS
    assert 0 < data["counts"]["prescriptions"] < clinicdata.N_APPOINTMENTS
    split = clinicdata.generate(tmp_path / "db", landing_dir=tmp_path / "landing")
    assert split["paths"]["lab_results"] == tmp_path / "landing" / "lab_results.csv"
    assert not (tmp_path / "db" / "lab_results.csv").exists()


def test_export_marks_missing_values_both_as_na_and_as_empty_in_numeric_columns(data):
    rows = _rows(data["paths"]["lab_results"])
    for column in ("value", "fasting_hours"):
        markers = Counter(r[column] for r in rows if r[column] in ("NA", ""))
        assert markers["NA"] > 100 and markers[""] > 100, (column, markers)
        present = [r[column] for r in rows if r[column] not in ("NA", "")]
        assert all(float(v) == float(v) for v in present)  # the rest are numbers
    assert all(r["flag"] == "" for r in rows if r["value"] in ("NA", ""))  # no flag without a value
    assert {r["flag"] for r in rows if r["value"] not in ("NA", "")} == {"H", "L", "N"}


def test_database_files_have_null_heavy_columns_and_never_the_na_marker(data):
    patients = _rows(data["paths"]["patients"])
    share = {c: sum(r[c] == "" for r in patients) / len(patients) for c in ("city", "insurance", "email", "sex")}
    assert 0.2 < share["city"] < 0.4 and 0.3 < share["insurance"] < 0.5 and 0.4 < share["email"] < 0.6
    assert share["sex"] > 0.1
    for kind in clinicdata.LOAD_ORDER:
        assert all("NA" not in r.values() for r in _rows(data["paths"][kind])), kind  # COPY reads "" as NULL


def test_appointments_are_consistent_and_prescriptions_reference_completed_visits(data):
    appts = {r["appointment_id"]: r for r in _rows(data["paths"]["appointments"])}
    statuses = Counter(r["status"] for r in appts.values())
    assert set(statuses) == {"completed", "no_show", "cancelled", "scheduled"}
    for r in appts.values():
        assert r["created_at"] <= r["scheduled_at"] <= r["updated_at"]
        if r["status"] != "completed":
            assert r["fee"] == r["duration_min"] == r["diagnosis_code"] == ""
    completed = [r for r in appts.values() if r["status"] == "completed"]
    assert any(r["fee"] == "" for r in completed) and any(r["diagnosis_code"] == "" for r in completed)
    rx = _rows(data["paths"]["prescriptions"])
    assert all(appts[r["appointment_id"]]["status"] == "completed" for r in rx)
    assert all(r["issued_on"] == appts[r["appointment_id"]]["scheduled_at"][:10] for r in rx)
    assert {int(r["doctor_id"]) for r in appts.values()} == set(range(1, clinicdata.N_DOCTORS + 1))


def test_sql_script_creates_every_table_and_copies_its_file():
    script = clinicdata.clinic_sql()
    for table in clinicdata.LOAD_ORDER:
        assert f"CREATE TABLE clinic.{table} (" in script
        assert f"\\copy clinic.{table} FROM '{table}.csv'" in script
    with pytest.raises(ValueError):
        clinicdata.ddl_statements("clinic; DROP SCHEMA shop")
