"""``python -m bench``: the executor's data plane against hand-written baselines, on the real local stack.

Measured, each ``--repeat`` times, interleaved (aietl, baseline, aietl, ...) so drift in the machine's load
hits both sides alike; the figure reported is the median rows/s:

1. aietl, PostgreSQL ``shop.orders`` -> ClickHouse (append) through ``run_pipeline``: Arrow batches of
   10,000 rows, columnar native inserts.
2. Baseline A, what a hand-written script does: a psycopg cursor and clickhouse-driver
   ``INSERT ... VALUES`` with row tuples, 1,000 rows per insert.
3. Baseline B: one INSERT per row, over the first 2,000 rows only (it is slow), as rows/s; stopped after
   10 s, since past 150 parts per table ClickHouse delays every insert and the rate can drop tenfold.
4. aietl PostgreSQL -> PostgreSQL (COPY) against psycopg ``executemany`` of INSERTs, both over 5,000 rows.

Every side reads the same extract (``ORDER BY order_id LIMIT n``) and loads into a fresh table made from the
same DDL (the built-in SQL generator's ``target_ddl``, what a deployed pipeline carries), created before the
clock starts. Goals are ratios aietl / baseline, never absolute timings (see ``bench/__init__.py``). The run
uses its own tenant, ClickHouse database and PostgreSQL schema and removes them at the end.

A missed goal is reported as MISSED with exit code 0: this is a report, not a test. Errors (stack down,
wrong row counts) exit non-zero.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

BATCH_ROWS = 10_000  # the executor's batch size under test
ROW_BATCH = 1_000  # baseline A: rows per INSERT, a typical hand-picked chunk
SINGLE_ROWS = 2_000  # baseline B: enough single-row inserts for a stable rate, few enough to stay quick
SINGLE_MAX_SECONDS = 10.0  # ... and a time cap: throttled inserts (parts_to_delay_insert) would blow the budget
PG_ROWS = 5_000  # PG -> PG: executemany of INSERTs is slow, so both sides load this many rows
WARMUP_ROWS = 100
DEFAULT_OUT = Path(__file__).resolve().parent / "BENCHMARKS.md"

# shop.orders as the SQL generator sees it (services/demo/shopdata.py); it derives both targets' DDL.
SOURCE_COLUMNS = [("order_id", "bigint"), ("customer_id", "integer"), ("status", "text"),
                  ("amount", "numeric(12,2)"), ("country", "text"), ("created_at", "timestamp without time zone"),
                  ("updated_at", "timestamp without time zone")]

# Goals, as ratios aietl / baseline. None: shown for context only.
GOAL_PG_CH_VS_ROW_BATCHED = 1.0
GOAL_PG_CH_VS_SINGLE_ROW = None
GOAL_PG_PG_VS_EXECUTEMANY = 1.0


@dataclass
class Measure:
    """One measured path: (rows loaded, seconds) of every repeat."""

    name: str
    runs: list[tuple[int, float]]

    @property
    def rates(self) -> list[float]:
        return [rows / seconds for rows, seconds in self.runs]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def rows(self) -> str:
        counts = sorted({rows for rows, _ in self.runs})
        return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}-{counts[-1]:,}"


@dataclass
class Comparison:
    label: str
    ours: Measure
    base: Measure
    goal: Optional[float]
    goal_text: str = ""  # the goal as a sentence, for the report

    @property
    def ratio(self) -> float:
        return self.ours.rate / self.base.rate

    @property
    def ratios(self) -> list[float]:
        """Per repeat: the two sides ran back to back, so each pair saw much the same machine."""
        return [o / b for o, b in zip(self.ours.rates, self.base.rates)]

    @property
    def status(self) -> str:
        if self.goal is None:
            return "context (no goal)"
        verdict = "met" if self.ratio >= self.goal else "MISSED"
        against = sum((r >= self.goal) != (self.ratio >= self.goal) for r in self.ratios)
        # a verdict some repeats contradict is noise-sensitive; say so rather than hide it
        return f"{verdict} (mixed: {against} of {len(self.ratios)} repeats disagree)" if against else verdict


class Bench:
    """The run's own tenant (registered connections), ClickHouse database and PostgreSQL schema."""

    def __init__(self, settings, log: Callable[[str], None]):
        from services.connectors.registry import build_registry

        tag = uuid.uuid4().hex[:8]
        self.settings, self.log = settings, log
        self.tenant = f"bench-{tag}"
        self.ch_db = f"bench_{tag}"
        self.pg_schema = f"bench_{tag}"
        self.registry = build_registry(settings)
        self._tables = 0

    # -- set-up and clean-up

    def setup(self) -> None:
        s = self.settings
        # Registered like a user's connections, so run_pipeline resolves them the way the executor does.
        self.registry.create(self.tenant, "pg", "postgres",
                             {"host": s.postgres_host, "port": s.postgres_port, "database": s.postgres_db,
                              "user": s.postgres_user}, {"password": s.postgres_password})
        self.registry.create(self.tenant, "ch", "clickhouse",
                             {"host": s.clickhouse_host, "port": s.clickhouse_port, "user": s.clickhouse_user},
                             {"password": s.clickhouse_password} if s.clickhouse_password else {})

    def cleanup(self) -> None:
        """Every step is tried, so one failure does not leave the rest behind."""
        steps = [
            lambda: self._ch(lambda c: c.execute(f"DROP DATABASE IF EXISTS {self.ch_db}")),
            lambda: self._pg(lambda db: (
                db.execute(f"DROP SCHEMA IF EXISTS {self.pg_schema} CASCADE"),
                # the PostgreSQL writer's idempotency keys for our targets
                db.execute("DELETE FROM aietl_meta.loaded_batches WHERE target LIKE %s", (self.pg_schema + ".%",))
                if db.execute("SELECT to_regclass('aietl_meta.loaded_batches')").fetchone()[0] else None)),
            lambda: self.registry.delete(self.tenant, "pg"),
            lambda: self.registry.delete(self.tenant, "ch"),
        ]
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - reported, and the remaining steps still run
                self.log(f"clean-up step failed: {exc}")

    def ch_client(self):
        from clickhouse_driver import Client

        s = self.settings
        return Client(s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                      password=s.clickhouse_password or "")

    def _ch(self, fn):
        client = self.ch_client()
        try:
            return fn(client)
        finally:
            client.disconnect()

    def _pg(self, fn, autocommit: bool = True):
        import psycopg

        with psycopg.connect(self.settings.postgres_dsn, autocommit=autocommit) as db:
            return fn(db)

    # -- targets

    def new_target(self, kind: str) -> tuple[dict, dict]:
        """(spec, artifacts) of a shop.orders -> fresh ``kind`` table pipeline; the table exists already."""
        from services.spec_compiler.sqlgen import generate_sql

        self._tables += 1
        where = self.ch_db if kind == "clickhouse" else self.pg_schema
        spec = {"source": {"kind": "postgres", "connection": "pg", "table": "shop.orders"},
                "target": {"kind": kind, "connection": "ch" if kind == "clickhouse" else "pg",
                           "table": f"{where}.orders_{self._tables}", "load_mode": "append"}}
        artifacts = generate_sql(spec, SOURCE_COLUMNS)
        stmts = [*artifacts.get("target_setup_sql", []), artifacts["target_ddl"]]
        if kind == "clickhouse":
            self._ch(lambda c: [c.execute(q) for q in stmts])
        else:
            self._pg(lambda db: [db.execute(q) for q in stmts])
        return spec, artifacts

    def count(self, kind: str, table: str) -> int:
        if kind == "clickhouse":
            return self._ch(lambda c: c.execute(f"SELECT count() FROM {table}")[0][0])
        return self._pg(lambda db: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def _checked(self, kind: str, table: str, want: int, seconds: float) -> tuple[int, float]:
        # A benchmark that loaded the wrong rows measures nothing: fail loudly instead.
        got = self.count(kind, table)
        if got != want:
            raise RuntimeError(f"{table}: {got} rows loaded, {want} expected")
        return want, seconds

    # -- the measured paths; each returns (rows, seconds), timing connect + extract + load

    def aietl(self, kind: str, rows: int) -> tuple[int, float]:
        from services.executor.plan import run_pipeline

        spec, artifacts = self.new_target(kind)
        artifacts["extract_sql"] = f"{artifacts['extract_sql']}\nORDER BY order_id\nLIMIT {rows}"
        t0 = time.perf_counter()
        totals = run_pipeline(spec, artifacts, self.registry, self.tenant, run_id=f"bench-{uuid.uuid4().hex[:12]}",
                              batch_rows=BATCH_ROWS)
        seconds = time.perf_counter() - t0
        if totals.rows_written != rows:
            raise RuntimeError(f"run_pipeline wrote {totals.rows_written} rows, {rows} expected")
        return self._checked(kind, spec["target"]["table"], rows, seconds)

    def ch_row_batched(self, rows: int, chunk: int = ROW_BATCH,
                       max_seconds: Optional[float] = None) -> tuple[int, float]:
        """Baseline A (and B with chunk=1): the script one writes by hand, row tuples in chunks; with
        ``max_seconds`` it stops after the chunk that crosses it (the rate counts the rows loaded)."""
        import psycopg

        spec, artifacts = self.new_target("clickhouse")
        table = spec["target"]["table"]
        insert = f"INSERT INTO {table} VALUES"
        loaded = 0
        t0 = time.perf_counter()
        with psycopg.connect(self.settings.postgres_dsn) as db, db.cursor() as cur:
            client = self.ch_client()
            try:
                cur.execute(f"{artifacts['extract_sql']} ORDER BY order_id LIMIT {rows}")
                while batch := cur.fetchmany(chunk):
                    client.execute(insert, batch)
                    loaded += len(batch)
                    if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                        break
            finally:
                client.disconnect()
        return self._checked("clickhouse", table, loaded, time.perf_counter() - t0)

    def pg_executemany(self, rows: int) -> tuple[int, float]:
        """The PG -> PG baseline: fetch, then executemany of parametrised INSERTs in one transaction."""
        import psycopg

        spec, artifacts = self.new_target("postgres")
        table = spec["target"]["table"]
        insert = f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(SOURCE_COLUMNS))})"
        t0 = time.perf_counter()
        with psycopg.connect(self.settings.postgres_dsn) as db:  # commits on a clean exit
            data = db.execute(f"{artifacts['extract_sql']} ORDER BY order_id LIMIT {rows}").fetchall()
            with db.cursor() as cur:
                cur.executemany(insert, data)
        return self._checked("postgres", table, rows, time.perf_counter() - t0)

    # -- facts for the report

    def source_rows(self, limit: int) -> int:
        return self._pg(lambda db: db.execute("SELECT least(count(*), %s) FROM shop.orders", (limit,)).fetchone()[0])

    def warm_up(self, rows: int) -> None:
        """Untimed: imports (pyarrow, drivers), PostgreSQL's cache of the extract, first connections."""
        self._pg(lambda db: db.execute(f"SELECT * FROM shop.orders ORDER BY order_id LIMIT {rows}").fetchall())
        self.aietl("clickhouse", WARMUP_ROWS)
        self.aietl("postgres", WARMUP_ROWS)
        self.ch_row_batched(WARMUP_ROWS)
        self.pg_executemany(WARMUP_ROWS)

    def machine(self) -> dict:
        return {"nproc": os.cpu_count(), "load": os.getloadavg()[0],
                "clickhouse": self._ch(lambda c: c.execute("SELECT version()")[0][0]),
                "postgres": self._pg(lambda db: db.execute("SHOW server_version").fetchone()[0]),
                "python": platform.python_version(),
                "platform": platform.platform()}


# ---------------------------------------------------------------- running and reporting

def measure(bench: Bench, rows: int, repeat: int, log: Callable[[str], None]) -> list[Comparison]:
    pg_rows = min(PG_ROWS, rows)
    single_rows = min(SINGLE_ROWS, rows)
    paths = {
        "aietl PG->CH": lambda: bench.aietl("clickhouse", rows),
        "A: row tuples x1000": lambda: bench.ch_row_batched(rows),
        "B: single-row INSERTs": lambda: bench.ch_row_batched(single_rows, chunk=1, max_seconds=SINGLE_MAX_SECONDS),
        "aietl PG->PG": lambda: bench.aietl("postgres", pg_rows),
        "executemany INSERTs": lambda: bench.pg_executemany(pg_rows),
    }
    results = {name: Measure(name, []) for name in paths}
    for r in range(repeat):
        for name, run in paths.items():
            n, seconds = run()
            results[name].runs.append((n, seconds))
            log(f"  repeat {r + 1}/{repeat}  {name:<24} {n:>7,} rows  {n / seconds:>10,.0f} rows/s")
    m = results
    return [
        Comparison("PG->CH vs hand-written, row tuples x1000 (A)", m["aietl PG->CH"], m["A: row tuples x1000"],
                   GOAL_PG_CH_VS_ROW_BATCHED, f"the executor loads PG->CH at >= {GOAL_PG_CH_VS_ROW_BATCHED:.1f}x the "
                   "row-batched hand-written baseline (A)"),
        Comparison("PG->CH vs single-row INSERTs (B)", m["aietl PG->CH"], m["B: single-row INSERTs"],
                   GOAL_PG_CH_VS_SINGLE_ROW),
        Comparison("PG->PG (COPY) vs executemany INSERTs", m["aietl PG->PG"], m["executemany INSERTs"],
                   GOAL_PG_PG_VS_EXECUTEMANY, f"the executor loads PG->PG at >= {GOAL_PG_PG_VS_EXECUTEMANY:.1f}x "
                   "psycopg executemany of INSERTs"),
    ]


def tables(comparisons: list[Comparison]) -> str:
    def rate(x: float) -> str:
        return f"{x:,.0f}"

    out = ["| Comparison | aietl rows/s | baseline rows/s | ratio aietl/baseline | per repeat | goal | status |",
           "|---|---:|---:|---:|---|---:|---|"]
    for c in comparisons:
        goal = "-" if c.goal is None else f">= {c.goal:.1f}x"
        out.append(f"| {c.label} | {rate(c.ours.rate)} | {rate(c.base.rate)} | {c.ratio:.2f}x | "
                   f"{', '.join(f'{r:.2f}x' for r in c.ratios)} | {goal} | "
                   f"{c.status} |")
    out += ["", "| Path | rows per run | median rows/s | every repeat (rows/s) |", "|---|---:|---:|---|"]
    seen: set[str] = set()
    for c in comparisons:
        for m in (c.ours, c.base):
            if m.name not in seen:
                seen.add(m.name)
                out.append(f"| {m.name} | {m.rows} | {rate(m.rate)} | {', '.join(rate(x) for x in m.rates)} |")
    return "\n".join(out)


def busy(machine: dict) -> bool:
    """Other work on the machine (e.g. a test suite against the same stack) skews the ratios."""
    return machine["load"] > 0.5 * machine["nproc"]


def summary(comparisons: list[Comparison]) -> str:
    """One line: every MISSED goal, and goals met only in some repeats."""
    goals = [c for c in comparisons if c.goal is not None]
    missed = [c for c in goals if c.status.startswith("MISSED")]
    mixed = [c for c in goals if c.status.startswith("met (mixed")]
    parts = [f"MISSED: {c.label} at {c.ratio:.2f}x (goal >= {c.goal:.1f}x)" for c in missed]
    parts += [f"met but not in every repeat: {c.label} ({', '.join(f'{r:.2f}x' for r in c.ratios)})"
              for c in mixed]
    return "; ".join(parts) if parts else "all goals met in every repeat"


def report(comparisons: list[Comparison], machine: dict, args, started: dt.datetime, seconds: float) -> str:
    goals = [c for c in comparisons if c.goal is not None]
    verdict = summary(comparisons)
    load = f"load average {machine['load']:.2f} at the start" + (
        " (**busy**: other work shared the machine, so read the ratios with care)" if busy(machine) else "")
    goal_lines = "\n".join(f"- goal: {c.goal_text}: measured {c.ratio:.2f}x, **{c.status}**" for c in goals)
    return f"""# Benchmarks: the executor's data plane

Written by `python -m bench` (`make bench`); regenerate rather than edit.

- Date: {started:%Y-%m-%d %H:%M} UTC ({seconds:.0f} s)
- Run: `python -m bench --rows {args.rows} --repeat {args.repeat}`
- Machine: {machine['nproc']} CPUs (nproc), {load}; {machine['platform']}, Python {machine['python']}
- Stack: ClickHouse {machine['clickhouse']} (`SELECT version()`), PostgreSQL {machine['postgres']}, both local

## Results

Median rows/s over {args.repeat} repeats, the paths interleaved in every repeat (ratio = median over median;
"per repeat" pairs the two sides of each repeat). Every path times connect +
extract + load of `shop.orders ORDER BY order_id LIMIT n` into a fresh table of the same DDL.

{tables(comparisons)}

- aietl: `run_pipeline` with `batch_rows={BATCH_ROWS:,}` (Arrow batches; ClickHouse columnar native inserts,
  PostgreSQL COPY), connections resolved from the registry of a throw-away tenant.
- A: psycopg cursor + clickhouse-driver `client.execute("INSERT INTO t VALUES", rows)`, {ROW_BATCH:,} row
  tuples per insert.
- B: the same with one row per INSERT, over the first {SINGLE_ROWS:,} rows only (stopped after {SINGLE_MAX_SECONDS:.0f} s), as
  rows/s: why batching matters. Past 150 parts per table ClickHouse delays each insert, so this rate falls
  fast.
- PG->PG: both sides over {PG_ROWS:,} rows; the baseline is `cursor.executemany("INSERT ... VALUES (%s, ...)")`
  in one transaction.

## Goals

Speed goals are ratios against a baseline measured in the same run, never absolute timings: timings on this
machine vary from run to run, the ratio is what carries over. The ratio still moves with the load: A pays a
server round-trip and a new part per 1,000 rows, aietl pays more client-side conversion per row, so a busy
ClickHouse tends to favour aietl and an idle one A. Compare runs at a similar load average.

{goal_lines}

Verdict: {verdict}.

## How to repeat

`make bench` (starts the stack with `aietl up`, then runs `python -m bench`). Options:
`python -m bench --rows N --repeat R --out PATH`. The run uses its own tenant, ClickHouse database and
PostgreSQL schema and removes them afterwards.
"""


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows of shop.orders to load (LIMIT of the extract)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per path; the median is reported")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown report (bench/BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")

    def log(msg: str) -> None:  # progress on stderr, so stdout holds just the table
        print(msg, file=sys.stderr, flush=True)

    from services.core.settings import load_settings
    from services.demo.load import ensure_demo_data

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    settings = load_settings()
    ensure_demo_data(settings)
    bench = Bench(settings, log)
    try:
        bench.setup()
        rows = bench.source_rows(args.rows)
        if rows < args.rows:
            log(f"shop.orders holds {rows:,} rows; loading those")
        args.rows = rows
        machine = bench.machine()
        if busy(machine):
            log(f"note: load average {machine['load']:.2f} on {machine['nproc']} CPUs: other work shares the machine")
        log(f"warming up (tenant {bench.tenant}) ...")
        bench.warm_up(rows)
        log(f"measuring: {rows:,} rows, {args.repeat} repeats")
        comparisons = measure(bench, rows, args.repeat, log)
    finally:
        bench.cleanup()
    text = report(comparisons, machine, args, started, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(tables(comparisons))
    print(summary(comparisons))
    print(f"report written to {args.out}")
    return 0  # a missed goal is a finding of the report, not a failure of the run


if __name__ == "__main__":
    sys.exit(main())
