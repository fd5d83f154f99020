"""Deterministic clinic data set: a second demo domain, unlike the shop, for the acceptance corpus.

Files written into ``out_dir`` (PostgreSQL loads them into schema ``clinic``; missing values are unquoted
empty fields, which COPY ... FORMAT csv reads as NULL):

* ``doctors.csv``        40 doctors: specialty, department (NULL for ~1 in 4), hired_on date, email (NULL ~30%);
* ``patients.csv``       2,500 patients: sex (NULL ~20%), birth_date (NULL ~10%), city (NULL ~30%),
  insurance OMS/DMS (NULL ~40%), email (NULL ~50%), registered_at timestamp;
* ``appointments.csv``   15,000 visits over 300 days from 2026-01-01 (quarter-hour slots): status
  completed x4 / no_show / cancelled / scheduled, channel (NULL ~25%); duration_min, fee and
  diagnosis_code only for completed visits (and even then sometimes NULL); created_at <= scheduled_at <=
  updated_at;
* ``prescriptions.csv``  about half the completed visits have one: drug, dose_mg (NULL ~15%), days
  (NULL ~20%), refills (NULL ~50%), issued_on date;
* ``clinic.sql``         DDL for schema ``clinic`` plus psql ``\\copy`` lines.

And the *export* file ``lab_results.csv`` (6,000 lab results: test_code, value, unit, taken_at, lab, flag,
fasting_hours), written into the landing folder the demo's file connection reads. It marks missing values
the way exports from other tools do: ``NA`` in some rows and an empty field in others, numeric columns
(value, fasting_hours) included.

The same arguments always give the same bytes: one ``random.Random(seed)`` consumed in a fixed order.

CLI: ``python -m services.demo.clinicdata OUT_DIR [--landing DIR] [--seed S]``.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Optional, Sequence

from services.demo.shopdata import check_schema_name

DEFAULT_SEED = 20261202
SCHEMA = "clinic"

N_DOCTORS = 40
N_PATIENTS = 2_500
N_APPOINTMENTS = 15_000
N_LAB_RESULTS = 6_000

START = datetime(2026, 1, 1, 8, 0)
SLOT_MINUTES = 15
N_SLOTS = 300 * 24 * 60 // SLOT_MINUTES

SPECIALTIES = ["cardiology", "dermatology", "neurology", "pediatrics", "therapy", "surgery", "ophthalmology",
               "endocrinology"]
DEPARTMENTS = ["North wing", "South wing", "Outpatient", None]
SURNAMES = ["Ivanova", "Petrov", "Smirnova", "Kuznetsov", "Popova", "Sokolov", "Lebedeva", "Kozlov", "Novikova",
            "Morozov"]
CITIES = ["Moscow", "Kazan", "Novosibirsk", "Samara", "Perm", None, None]  # None: not recorded (~30%)
SEXES = ["F", "M", "F", "M", None]
INSURANCE = ["OMS", "OMS", "DMS", None, None]
STATUSES = ["completed", "completed", "completed", "completed", "no_show", "cancelled", "scheduled"]
CHANNELS = ["online", "phone", "walk-in", None]
DIAGNOSES = ["I10", "E11", "J06", "M54", "K29", "L20", "H52", "G43"]
DRUGS = ["amoxicillin", "metformin", "lisinopril", "ibuprofen", "omeprazole", "atorvastatin", "cetirizine"]
DOSES = [5, 10, 20, 250, 500, 850]
LABS = ["Invitro", "Helix", "CMD", "NA", ""]  # the export's two missing-value markers appear in text too
# test code -> (unit, low, high of the generated values, normal range low, high)
TESTS = {"HGB": ("g/L", 95.0, 175.0, 120.0, 160.0), "GLU": ("mmol/L", 3.2, 9.5, 3.9, 6.1),
         "CHOL": ("mmol/L", 2.8, 8.2, 3.0, 5.2), "ALT": ("U/L", 4.0, 90.0, 7.0, 40.0),
         "TSH": ("mIU/L", 0.2, 7.0, 0.4, 4.0)}

# PostgreSQL tables in file-column order (the COPY loads rely on that order).
TABLES: dict[str, list[tuple[str, str]]] = {
    "doctors": [("doctor_id", "int PRIMARY KEY"), ("full_name", "text"), ("specialty", "text"),
                ("department", "text"), ("hired_on", "date"), ("email", "text")],
    "patients": [("patient_id", "int PRIMARY KEY"), ("full_name", "text"), ("sex", "text"),
                 ("birth_date", "date"), ("city", "text"), ("insurance", "text"), ("email", "text"),
                 ("registered_at", "timestamp")],
    "appointments": [("appointment_id", "bigint PRIMARY KEY"), ("patient_id", "int"), ("doctor_id", "int"),
                     ("scheduled_at", "timestamp"), ("status", "text"), ("channel", "text"),
                     ("duration_min", "int"), ("fee", "numeric(10,2)"), ("diagnosis_code", "text"),
                     ("created_at", "timestamp"), ("updated_at", "timestamp")],
    "prescriptions": [("prescription_id", "int PRIMARY KEY"), ("appointment_id", "bigint"), ("drug", "text"),
                      ("dose_mg", "numeric(8,1)"), ("days", "int"), ("refills", "int"), ("issued_on", "date")],
}
LOAD_ORDER = ("doctors", "patients", "appointments", "prescriptions")
LAB_COLUMNS = ["result_id", "patient_id", "test_code", "value", "unit", "taken_at", "lab", "flag", "fasting_hours"]
LAB_FILE = "lab_results.csv"
SQL_FILE = "clinic.sql"


def table_file(table: str) -> str:
    return f"{table}.csv"


def ddl_statements(schema: str = SCHEMA) -> list[str]:
    """DROP + CREATE statements for the clinic tables in ``schema`` (no foreign keys: drop order is free)."""
    s = check_schema_name(schema)
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {s}"]
    stmts += [f"DROP TABLE IF EXISTS {s}.{t}" for t in reversed(LOAD_ORDER)]
    for table in LOAD_ORDER:
        cols = ", ".join(f"{name} {type_}" for name, type_ in TABLES[table])
        stmts.append(f"CREATE TABLE {s}.{table} ({cols})")
    return stmts


def clinic_sql(schema: str = SCHEMA) -> str:
    lines = [stmt + ";" for stmt in ddl_statements(schema)]
    lines += [f"\\copy {schema}.{t} FROM '{table_file(t)}' WITH (FORMAT csv, HEADER true)" for t in LOAD_ORDER]
    return "\n".join(lines) + "\n"


def _csv_writer(f):
    return csv.writer(f, delimiter=",", quotechar='"', lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)


def _cell(v: Any) -> Any:
    """None -> an empty unquoted field (NULL for COPY ... FORMAT csv); dates and times in ISO form."""
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    return v


def _write(path: Path, columns: list[str], rows: list[list]) -> int:
    # Written aside and renamed in: a reader (a running pipeline) sees the old bytes or the new, never half.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = _csv_writer(f)
        w.writerow(columns)
        w.writerows([_cell(v) for v in row] for row in rows)
    os.replace(tmp, path)
    return len(rows)


def _maybe(rnd: random.Random, p_missing: float, value: Any) -> Any:
    # The draw happens whatever the value, so the stream of draws does not depend on earlier outcomes.
    return None if rnd.random() < p_missing else value


def _doctors(rnd: random.Random) -> list[list]:
    rows = []
    for i in range(1, N_DOCTORS + 1):
        surname = SURNAMES[i % len(SURNAMES)]
        hired = date(2010, 1, 1) + timedelta(days=rnd.randint(0, 15 * 365))
        email = _maybe(rnd, 0.3, f"{surname.lower()}.{i}@clinic.example")
        rows.append([i, f"Dr. {surname} {i}", SPECIALTIES[i % len(SPECIALTIES)], rnd.choice(DEPARTMENTS), hired,
                     email])
    return rows


def _patients(rnd: random.Random) -> list[list]:
    rows = []
    for i in range(1, N_PATIENTS + 1):
        sex = rnd.choice(SEXES)
        birth = _maybe(rnd, 0.1, date(1940, 1, 1) + timedelta(days=rnd.randint(0, 80 * 365)))
        city = rnd.choice(CITIES)
        insurance = rnd.choice(INSURANCE)
        email = _maybe(rnd, 0.5, f"patient{i}@mail.example")
        registered = datetime(2024, 1, 1) + timedelta(minutes=rnd.randint(0, 900 * 24 * 60))
        rows.append([i, f"Patient {i}", sex, birth, city, insurance, email, registered])
    return rows


def _appointments(rnd: random.Random) -> list[list]:
    rows = []
    for i in range(1, N_APPOINTMENTS + 1):
        scheduled = START + timedelta(minutes=SLOT_MINUTES * rnd.randint(0, N_SLOTS))
        status = rnd.choice(STATUSES)
        completed = status == "completed"
        duration = _maybe(rnd, 0.05, rnd.randint(10, 60))
        fee = _maybe(rnd, 0.1, f"{rnd.uniform(500, 5000):.2f}")
        diagnosis = _maybe(rnd, 0.3, rnd.choice(DIAGNOSES))
        created = scheduled - timedelta(minutes=rnd.randint(60, 30 * 24 * 60))
        updated = scheduled + timedelta(minutes=rnd.randint(0, 600))
        rows.append([i, rnd.randint(1, N_PATIENTS), rnd.randint(1, N_DOCTORS), scheduled, status,
                     rnd.choice(CHANNELS), duration if completed else None, fee if completed else None,
                     diagnosis if completed else None, created, updated])
    return rows


def _prescriptions(rnd: random.Random, appointments: list[list]) -> list[list]:
    rows = []
    for appt in appointments:
        wanted = rnd.random() < 0.5
        if appt[4] != "completed" or not wanted:
            continue
        dose = _maybe(rnd, 0.15, rnd.choice(DOSES))
        days = _maybe(rnd, 0.2, rnd.randint(3, 30))
        refills = _maybe(rnd, 0.5, rnd.randint(0, 3))
        rows.append([len(rows) + 1, appt[0], rnd.choice(DRUGS), dose, days, refills, appt[3].date()])
    return rows


def _lab_missing(rnd: random.Random, value: str, p_na: float, p_empty: float) -> str:
    r = rnd.random()
    return "NA" if r < p_na else "" if r < p_na + p_empty else value


def _lab_results(rnd: random.Random) -> list[list]:
    rows = []
    for i in range(1, N_LAB_RESULTS + 1):
        code = rnd.choice(sorted(TESTS))
        unit, lo, hi, normal_lo, normal_hi = TESTS[code]
        value = round(rnd.uniform(lo, hi), 1 if code in ("HGB", "ALT") else 2)
        flag = "H" if value > normal_hi else "L" if value < normal_lo else "N"
        taken = START + timedelta(minutes=rnd.randint(0, 300 * 24 * 60))
        cell = _lab_missing(rnd, str(value), 0.08, 0.05)
        fasting = _lab_missing(rnd, str(rnd.randint(0, 14)), 0.15, 0.1)
        rows.append([i, rnd.randint(1, N_PATIENTS), code, cell, unit, taken, rnd.choice(LABS),
                     "" if cell in ("NA", "") else flag, fasting])
    return rows


def generate(out_dir: Path, landing_dir: Optional[Path] = None, seed: int = DEFAULT_SEED) -> dict:
    """Write the clinic data set into ``out_dir`` and ``lab_results.csv`` into ``landing_dir`` (default:
    ``out_dir``). Returns ``{"dir", "paths": {kind: Path}, "counts": {kind: rows}}``; kinds are the four
    tables, ``lab_results`` and (paths only) ``sql``."""
    out_dir = Path(out_dir)
    landing_dir = Path(landing_dir) if landing_dir is not None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    landing_dir.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    # The draw order below is part of the output.
    data = {"doctors": _doctors(rnd), "patients": _patients(rnd), "appointments": _appointments(rnd)}
    data["prescriptions"] = _prescriptions(rnd, data["appointments"])
    paths = {t: out_dir / table_file(t) for t in LOAD_ORDER}
    counts = {t: _write(paths[t], [c for c, _ in TABLES[t]], data[t]) for t in LOAD_ORDER}
    paths["lab_results"] = landing_dir / LAB_FILE
    counts["lab_results"] = _write(paths["lab_results"], LAB_COLUMNS, _lab_results(rnd))
    paths["sql"] = out_dir / SQL_FILE
    paths["sql"].write_text(clinic_sql(), encoding="utf-8")
    return {"dir": out_dir, "paths": paths, "counts": counts}


# ------------------------------------------------------------------------------------------ loading

def load_into_postgres(dsn: str, data_dir: Path, schema: str = SCHEMA) -> dict:
    """(Re)create the clinic tables in ``schema`` and COPY the CSVs of ``data_dir`` in, in one transaction
    (readers see the old tables or the complete new ones). Returns the row count of each table."""
    import psycopg  # here: generating files must not need a database driver

    from services.demo.load import copy_csv

    schema = check_schema_name(schema)
    data_dir = Path(data_dir)
    missing = [t for t in LOAD_ORDER if not (data_dir / table_file(t)).is_file()]
    if missing:
        raise FileNotFoundError(f"clinic data missing in {data_dir}: {', '.join(missing)}")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"aietl.demo.{schema}",))
        for stmt in ddl_statements(schema):
            cur.execute(stmt)
        counts = {}
        for table in LOAD_ORDER:
            copy_csv(cur, f"{schema}.{table}", [c for c, _ in TABLES[table]], data_dir / table_file(table))
            cur.execute(f"SELECT count(*) FROM {schema}.{table}")
            counts[table] = cur.fetchone()[0]
    return counts


def _loaded(dsn: str, schema: str, expected: dict) -> bool:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table in LOAD_ORDER:
            cur.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",))
            if cur.fetchone()[0] is None:
                return False
            cur.execute(f"SELECT count(*) FROM {schema}.{table}")
            if cur.fetchone()[0] != expected[table]:
                return False
    return True


def ensure_clinic_data(settings, landing_dir: Path, data_dir: Optional[Path] = None,
                       schema: str = SCHEMA) -> dict:
    """Generate the clinic files (cheap, always: the bytes are fixed) and load schema ``clinic`` unless it
    already holds exactly the generated row counts. ``landing_dir`` is the demo file connection's folder
    (``ensure_demo_data``'s result), where ``lab_results.csv`` goes. Returns ``generate``'s result."""
    schema = check_schema_name(schema)
    data_dir = Path(data_dir) if data_dir is not None else Path(settings.state_dir) / "demo" / "clinic_data"
    result = generate(data_dir, landing_dir)
    if not _loaded(settings.postgres_dsn, schema, result["counts"]):
        load_into_postgres(settings.postgres_dsn, data_dir, schema)
    from services.demo.load import grant_read

    grant_read(settings, schema)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.demo.clinicdata",
                                     description="Write the deterministic clinic data set.")
    parser.add_argument("out_dir", nargs="?", default="clinic_data", type=Path)
    parser.add_argument("--landing", type=Path, default=None, help="folder for lab_results.csv (default OUT_DIR)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    result = generate(args.out_dir, args.landing, seed=args.seed)
    counts = ", ".join(f"{k}={v}" for k, v in result["counts"].items())
    print(f"wrote clinic data to {result['dir']} ({counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
