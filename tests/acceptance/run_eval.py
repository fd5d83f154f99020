"""Run the acceptance corpus through the real system and write docs/EVAL.md.

Every case goes in over HTTP like a user's request: POST /api/v1/pipelines, wait for the draft's outcome;
a draft is deployed, run once (a streaming case is fed its Kafka events instead), and the rows its target
holds are read back from ClickHouse, PostgreSQL or the file folder and compared with the rows the case
expects (tests/acceptance/corpus.yaml; computed here from the source, never from the system's SQL).

A draft that passed QA but loaded other rows than expected is *wrong data*: the number that matters most.

    python -m tests.acceptance.run_eval [--provider-chain builtin] [--only IDS|CATEGORY] [--parallel 4]
                                        [--out docs/EVAL.md] [--json results.json] [--keep]

`make eval` brings the stack up and runs this. The deployment it starts (every worker and the gateway on a
topic prefix and tenant of their own) is stopped at the end; its topics, Redis keys, the targets the cases
named and the feed topics are removed (``--keep`` leaves the targets for a look).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import yaml
from services.core.kafka_auth import client_conf

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).with_name("corpus.yaml")
TERMINAL = {"draft_ready", "draft_failed", "needs_clarification", "refused"}
EXPECTED_STATUS = {"draft": "draft_ready", "clarify": "needs_clarification", "refuse": "refused"}
# Failure kinds, in the order the report lists them.
KINDS = ("pass", "wrong_data", "wrong_spec", "wrong_outcome", "draft_failed", "deploy_failed", "run_failed",
         "timeout", "error")
PROTECTED_SCHEMAS = {"shop", "clinic", "system", "information_schema", "pg_catalog", "aietl"}


def load_corpus(path: Path = CORPUS) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]


def select(cases: list[dict], only: Optional[str]) -> list[dict]:
    """``only``: comma-separated case ids, id prefixes (``c-agg``), categories or datasets."""
    if not only:
        return cases
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    return [c for c in cases if any(c["id"] == w or c["id"].startswith(w) or c["category"] == w
                                    or c["dataset"] == w for w in wanted)]


def provider_chain_json(chain: str) -> str:
    """``builtin`` | a comma list of provider kinds without settings (``builtin``) | JSON | @file.json."""
    if chain.startswith("@"):
        chain = Path(chain[1:]).read_text()
    if chain.lstrip().startswith("["):
        json.loads(chain)  # fail early on a typo
        return chain
    return json.dumps([{"name": kind, "kind": kind} for kind in chain.split(",") if kind])


# ---------------------------------------------------------------------------------------------- results

@dataclass
class Result:
    id: str
    category: str
    lang: str
    dataset: str
    expect: str
    text: str
    kind: str = "error"  # one of KINDS
    status: Optional[str] = None
    reason: str = ""
    latency_s: Optional[float] = None
    pipeline_id: Optional[str] = None
    rows: Optional[int] = None
    created: list = field(default_factory=list)  # (kind, locator) of targets the system made elsewhere

    @property
    def passed(self) -> bool:
        return self.kind == "pass"


# ---------------------------------------------------------------------------------------------- stores

class Stores:
    """Reading and dropping targets, and computing expected rows, on the local stack."""

    def __init__(self, settings, landing: Path):
        self.settings = settings
        self.landing = landing
        self._local = threading.local()

    def ch(self):
        if getattr(self._local, "ch", None) is None:
            from clickhouse_driver import Client

            s = self.settings
            self._local.ch = Client(host=s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                                    password=s.clickhouse_password)
        return self._local.ch

    def pg(self, sql: str, params=None) -> tuple[list[str], list[tuple]]:
        import psycopg

        with psycopg.connect(self.settings.postgres_dsn, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            if cur.description is None:
                return [], []
            return [d.name for d in cur.description], cur.fetchall()

    def expected(self, case: dict) -> tuple[list[str], list[tuple]]:
        from tests.acceptance.expected import FUNCTIONS

        exp = case["expected"]
        if "sql" in exp:
            return self.pg(exp["sql"])
        return FUNCTIONS[exp["python"]](self.landing, **(exp.get("args") or {}))

    def exists(self, target: dict) -> bool:
        kind, loc = target["kind"], _locator(target)
        if kind == "clickhouse":
            db, table = _split(loc, "default")
            return bool(self.ch().execute("EXISTS TABLE `%s`.`%s`" % (db, table))[0][0])
        if kind == "postgres":
            return self.pg("SELECT to_regclass(%s) IS NOT NULL", (_pg_ref(loc),))[1][0][0]
        return (self.landing / loc).exists()

    def drop(self, target: dict) -> None:
        kind, loc = target["kind"], _locator(target)
        if kind == "clickhouse":
            db, table = _split(loc, "default")
            if db not in PROTECTED_SCHEMAS:
                self.ch().execute("DROP TABLE IF EXISTS `%s`.`%s`" % (db, table))
        elif kind == "postgres":
            schema, table = _split(loc, "public")
            if schema not in PROTECTED_SCHEMAS:
                self.pg(f'DROP TABLE IF EXISTS "{schema}"."{table}"')
        elif kind == "file":
            path = self.landing / loc
            for p in (path, path.with_name(f".{path.name}.aietl-runs")):
                p.unlink(missing_ok=True)

    def read(self, target: dict) -> tuple[list[str], list[tuple]]:
        kind, loc = target["kind"], _locator(target)
        if kind == "clickhouse":
            db, table = _split(loc, "default")
            engine = self._engine(db, table)
            final = " FINAL" if engine and "Replacing" in engine[0][0] else ""  # a merge load: latest rows
            rows, types = self.ch().execute(f"SELECT * FROM `{db}`.`{table}`{final}", with_column_types=True)
            return [name for name, _ in types], rows
        if kind == "postgres":
            schema, table = _split(loc, "public")
            return self.pg(f'SELECT * FROM "{schema}"."{table}"')
        return _read_file(self.landing / loc)


    def _engine(self, db: str, table: str) -> list:
        """ClickHouse 18.16 opens every table listed while it scans system.tables: another case dropping its
        own table at that moment fails the query (code 60, naming that table), so it is asked again."""
        from clickhouse_driver.errors import ServerException

        for attempt in range(5):
            try:
                return self.ch().execute("SELECT engine FROM system.tables WHERE database = %(d)s AND name = %(t)s",
                                         {"d": db, "t": table})
            except ServerException as exc:
                if exc.code != 60 or f"{db}.{table} " in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2)
        return []


def _locator(target: dict) -> str:
    return target.get("table") or target.get("path") or target.get("topic") or ""


def _split(ref: str, default: str) -> tuple[str, str]:
    return tuple(ref.split(".", 1)) if "." in ref else (default, ref)  # type: ignore[return-value]


def _pg_ref(ref: str) -> str:
    schema, table = _split(ref, "public")
    return f'"{schema}"."{table}"'


def _read_file(path: Path) -> tuple[list[str], list[tuple]]:
    import pyarrow.csv as pcsv
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
    elif suffix == ".csv":
        # Every cell as the text the file holds: type inference would read the phone "+7128..." as a number,
        # a wrong-data verdict for a correct file; rows.canonical(numeric_text=True) reads numbers from text.
        import csv

        import pyarrow as pa

        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            strings_can_be_null=True, column_types={c: pa.string() for c in header}))
    else:
        table = pj.read_json(path)
    cols = table.column_names
    return cols, [tuple(r[c] for c in cols) for r in table.to_pylist()]


def _spec_target(spec: dict) -> Optional[dict]:
    t = spec.get("target") or {}
    if t.get("kind") in ("clickhouse", "postgres") and t.get("table"):
        return {"kind": t["kind"], "table": t["table"]}
    if t.get("kind") == "file" and t.get("path"):
        return {"kind": "file", "path": t["path"]}
    return None


def _same_target(a: dict, b: dict) -> bool:
    if a["kind"] != b["kind"]:
        return False
    default = {"clickhouse": "default", "postgres": "public"}.get(a["kind"], "")
    if a["kind"] == "file":
        return _locator(a) == _locator(b)
    return _split(_locator(a).lower(), default) == _split(_locator(b).lower(), default)


# ---------------------------------------------------------------------------------------------- one case

class Runner:
    def __init__(self, dep, stores: Stores, draft_timeout: float, run_timeout: float, keep: bool):
        self.dep = dep
        self.stores = stores
        self.draft_timeout = draft_timeout
        self.run_timeout = run_timeout
        self.keep = keep
        self.stopping = threading.Event()  # set on SIGINT/SIGTERM: cases in flight stop waiting

    def pause(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise RuntimeError("interrupted")

    def http(self):
        return self.dep.client(timeout=30)

    def run(self, case: dict) -> Result:
        res = Result(case["id"], case["category"], case["lang"], case["dataset"], case["expect"], case["text"])
        try:
            self._run(case, res)
        except Exception as exc:  # the report names it; one broken case must not stop the others
            res.kind, res.reason = "error", f"{type(exc).__name__}: {exc}"[:400]
        finally:
            if not self.keep:
                for target in [case.get("target"), *res.created]:
                    if target:
                        try:
                            self.stores.drop(target)
                        except Exception:
                            pass
        return res

    def _run(self, case: dict, res: Result) -> None:
        target = case.get("target")
        if target:
            self.stores.drop(target)  # every case starts from nothing
        if case.get("feed"):
            fresh_topic(self.dep.settings, case["feed"]["topic"])
        with self.http() as c:
            state = self._draft(c, case, res)
            if state is None:
                return
            if case["expect"] != "draft":
                ok = state["status"] == EXPECTED_STATUS[case["expect"]]
                res.kind = "pass" if ok else "wrong_outcome"
                res.reason = "" if ok else _why(state)
                return
            if state["status"] != "draft_ready":
                res.kind = "draft_failed" if state["status"] == "draft_failed" else "wrong_outcome"
                res.reason = _why(state)
                if state["status"] == "draft_failed":
                    res.reason = "QA failed: " + _failure(c, res.pipeline_id)
                return
            spec = json.loads(state["versions"][-1]["artifacts"]["spec_json"])
            self._deploy_and_check(c, case, res, spec)

    def _draft(self, c, case: dict, res: Result) -> Optional[dict]:
        t0 = time.monotonic()
        r = c.post("/api/v1/pipelines", json={"description": case["text"]})
        if r.status_code != 202:
            res.kind, res.reason = "error", f"POST /pipelines -> {r.status_code} {r.text[:200]}"
            return None
        res.pipeline_id = pid = r.json()["pipeline_id"]
        while time.monotonic() - t0 < self.draft_timeout:
            got = c.get(f"/api/v1/pipelines/{pid}")
            if got.status_code == 200 and got.json().get("status") in TERMINAL:
                res.latency_s = time.monotonic() - t0
                state = got.json()
                res.status = state["status"]
                return state
            self.pause(0.1)
        res.kind, res.reason = "timeout", f"no draft outcome within {self.draft_timeout:.0f} s"
        return None

    def _deploy_and_check(self, c, case: dict, res: Result, spec: dict) -> None:
        target = case["target"]
        actual = _spec_target(spec)
        if actual and not _same_target(actual, target) and not self.stores.exists(actual):
            res.created.append(actual)  # made by this case only: removed with it
        r = c.post(f"/api/v1/pipelines/{res.pipeline_id}/deploy", json={})
        if r.status_code != 200:
            res.kind, res.reason = "deploy_failed", f"deploy -> {r.status_code} {r.text[:300]}"
            return
        try:
            # The shop tables are shared with other tests that change rows for a moment (P04, P12): the
            # expected rows are taken before and after the run, and a target matching either is right.
            before = self.stores.expected(case)
            if case.get("feed"):
                ok = self._feed_and_wait(case, res)
            else:
                ok = self._run_once(c, res)
            if not ok:
                return
            self._check_rows(case, res, spec, actual, before)
        finally:
            c.delete(f"/api/v1/pipelines/{res.pipeline_id}")  # no schedule or stream keeps going

    def _run_once(self, c, res: Result) -> bool:
        r = c.post(f"/api/v1/pipelines/{res.pipeline_id}/runs", json={"params": {}})
        if r.status_code != 202:
            res.kind, res.reason = "run_failed", f"trigger -> {r.status_code} {r.text[:300]}"
            return False
        run_id = r.json()["run_id"]
        deadline = time.monotonic() + self.run_timeout
        while time.monotonic() < deadline:
            got = c.get(f"/api/v1/runs/{run_id}")
            if got.status_code == 200 and got.json().get("status") in ("succeeded", "failed", "cancelled"):
                run = got.json()
                if run["status"] != "succeeded":
                    res.kind = "run_failed"
                    res.reason = f"run {run['status']}: {str(run.get('error') or run.get('last_error'))[:300]}"
                    return False
                return True
            self.pause(0.3)
        res.kind, res.reason = "run_failed", f"run not finished within {self.run_timeout:.0f} s"
        return False

    def _feed_and_wait(self, case: dict, res: Result) -> bool:
        from tests.acceptance.expected import FUNCTIONS

        feed = case["feed"]
        cols, rows = FUNCTIONS[feed["python"]](self.stores.landing, **(feed.get("args") or {}))
        produce_json(self.dep.settings, feed["topic"], [dict(zip(cols, r)) for r in rows])
        want = len(self.stores.expected(case)[1])
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + self.run_timeout
        while time.monotonic() < deadline:
            try:
                n = self.stores.ch().execute(f"SELECT count() FROM {case['target']['table']}")[0][0]
            except Exception:  # the stream creates its table with the first batch
                n = 0
            if n != last:
                last, stable_since = n, time.monotonic()
            if n >= want and time.monotonic() - stable_since > 3:
                return True
            self.pause(0.5)
        if last <= 0:
            res.kind, res.reason = "run_failed", f"the stream loaded nothing within {self.run_timeout:.0f} s"
            return False
        return True  # fewer rows than fed: the comparison says so

    def _check_rows(self, case: dict, res: Result, spec: dict, actual: Optional[dict], before: tuple) -> None:
        from tests.acceptance.rows import compare

        target = case["target"]
        if actual and not _same_target(actual, target):
            res.kind, res.reason = "wrong_data", f"loaded into {actual['kind']} {_locator(actual)}, not {_locator(target)}"
            return
        if not self.stores.exists(target):
            res.kind, res.reason = "wrong_data", f"the run succeeded but {_locator(target)} does not exist"
            return
        got_cols, got_rows = self.stores.read(target)
        exp_cols, exp_rows = self.stores.expected(case)
        res.rows = len(got_rows)
        untyped = target["kind"] == "file" and _locator(target).lower().endswith(".csv")
        ok, why = compare(exp_cols, exp_rows, got_cols, got_rows, case.get("columns") or [], numeric_text=untyped)
        if not ok and not compare(*before, exp_cols, exp_rows)[0]:  # the source changed while the case ran
            ok, why_before = compare(*before, got_cols, got_rows, case.get("columns") or [], numeric_text=untyped)
            if not ok:
                res.kind, res.reason = "error", f"the source changed during the run (another test?); {why}"
                return
            why = why_before + " (as the source was before the run)"
        if not ok:
            res.kind, res.reason = "wrong_data", why
            return
        bad = spec_mismatches(case.get("spec") or {}, spec)
        res.kind, res.reason = ("wrong_spec", "; ".join(bad)) if bad else ("pass", why)


def spec_mismatches(want: dict, spec: dict) -> list[str]:
    """The facts of ``want`` (cron, load_mode, keys, cursor, streaming) the deployed spec gets wrong."""
    have = {"cron": (spec.get("schedule") or {}).get("cron"),
            "load_mode": spec["target"].get("load_mode"),
            "keys": spec["target"].get("keys"),
            "cursor": (spec.get("incremental") or {}).get("cursor_column"),
            "streaming": (spec.get("streaming") or {}).get("enabled", False)}
    return [f"{k}: {have[k]!r}, expected {v!r}" for k, v in want.items() if have[k] != v]


def _why(state: dict) -> str:
    w = state.get("working") or {}
    status = state.get("status")
    if status == "needs_clarification":
        return f"asked: {w.get('question')}"
    if status == "refused":
        return f"refused: {w.get('reason')}"
    if status == "draft_ready":
        return "a draft was produced"
    return f"status {status}: {json.dumps(w)[:200]}"


def _failure(c, pipeline_id: str) -> str:
    """Why drafting failed, from the log: the last QA findings or the DraftingFailed reason."""
    r = c.get(f"/api/v1/pipelines/{pipeline_id}/events")
    events = r.json().get("events", []) if r.status_code == 200 else []
    for ev in reversed(events):
        payload = ev.get("payload") or {}
        if ev["type"] == "QaFailed":
            return json.dumps(payload.get("findings"), ensure_ascii=False)[:300]
        if ev["type"] == "DraftingFailed":
            return f"{payload.get('stage')}: {payload.get('reason')}"[:300]
    return "no QaFailed or DraftingFailed event"


# ---------------------------------------------------------------------------------------------- kafka

def fresh_topic(settings, topic: str, partitions: int = 3) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_conf(settings))
    delete_topics(settings, [topic])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)
            return
        except Exception as exc:  # still being deleted
            if "already exists" in str(exc) and topic in admin.list_topics(timeout=10).topics:
                time.sleep(0.5)
                continue
            time.sleep(0.5)
    raise RuntimeError(f"could not create topic {topic}")


def delete_topics(settings, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_conf(settings))
    present = [t for t in topics if t in admin.list_topics(timeout=10).topics]
    if not present:
        return
    for f in admin.delete_topics(present).values():
        try:
            f.result(30)
        except Exception:
            pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(t in admin.list_topics(timeout=10).topics for t in present):
        time.sleep(0.3)


def produce_json(settings, topic: str, records: list[dict]) -> None:
    from confluent_kafka import Producer

    p = Producer({**client_conf(settings), "linger.ms": 20})
    for i, rec in enumerate(records):
        p.produce(topic, key=str(i).encode(), value=json.dumps(rec).encode())
        if i % 5000 == 0:
            p.poll(0)
    if p.flush(60):
        raise RuntimeError(f"could not deliver every event to {topic}")


# ---------------------------------------------------------------------------------------------- report

def percentile(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.0f}%)" if d else "0/0"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_report(results: list[Result], stats: dict, meta: dict) -> str:
    n = len(results)
    passed = sum(r.passed for r in results)
    by_kind = {k: sum(r.kind == k for r in results) for k in KINDS}
    drafts = [r for r in results if r.expect == "draft"]
    qa_passed = [r for r in drafts if r.status == "draft_ready"]
    lat = [r.latency_s for r in results if r.latency_s is not None]
    totals = stats.get("totals", {})
    calls = totals.get("calls", 0)
    cost = totals.get("cost_usd", 0.0)
    requested = sum(r.pipeline_id is not None for r in results)
    lines = [
        "# Acceptance evaluation",
        "",
        f"Generated by `make eval` (`python -m tests.acceptance.run_eval`) on {meta['when']} at "
        f"`{meta['commit']}`; provider chain `{meta['chain']}`; {meta['parallel']} cases at a time; "
        f"wall time {meta['wall_s']:.0f} s. Corpus: [tests/acceptance/corpus.yaml](../tests/acceptance/corpus.yaml) "
        f"({n} cases{' selected with --only ' + meta['only'] if meta['only'] else ''}), over the shop and clinic "
        "data sets. A case passes when the outcome is the expected one and, for drafts, the deployed pipeline's "
        "first run leaves exactly the expected rows in the target (a multiset, numbers within 0.006, column names "
        "case-insensitive) and the spec has the schedule/load mode/cursor the request asked for.",
        "",
        "## Summary",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| pass rate | **{_pct(passed, n)}** |",
        f"| **wrong data** (draft passed QA, ran, loaded other rows than asked) | **{by_kind['wrong_data']}** "
        f"of {len(qa_passed)} QA-passed drafts |",
        f"| drafts expected / produced (QA passed) / correct | {len(drafts)} / {len(qa_passed)} / "
        f"{sum(r.passed for r in drafts)} |",
        f"| destructive requests refused | {_pct(sum(r.passed for r in results if r.expect == 'refuse'), sum(r.expect == 'refuse' for r in results))} |",
        f"| vague requests asked back | {_pct(sum(r.passed for r in results if r.expect == 'clarify'), sum(r.expect == 'clarify' for r in results))} |",
        f"| refusals of requests that were not destructive | {sum(r.status == 'refused' and r.expect != 'refuse' for r in results)} |",
        f"| draft latency p50 / p95 (POST to outcome, under {meta['parallel']}-way load) | "
        f"{_sec(percentile(lat, 0.5))} / {_sec(percentile(lat, 0.95))} |",
        f"| LLM calls per draft request | {calls / requested:.2f} ({calls} calls for {requested} requests) |" if requested
        else "| LLM calls per request | - |",
        f"| LLM cost per draft request | ${cost / requested:.6f} (total ${cost:.6f}) |" if requested else "| LLM cost | - |",
        "",
        "Outcomes: " + ", ".join(f"{k} {v}" for k, v in by_kind.items() if v) + ".",
        "",
        "## By category",
        "",
        "| category | cases | pass | pass rate | wrong data |",
        "| --- | --- | --- | --- | --- |",
    ]
    cats = sorted({r.category for r in results})
    for cat in cats:
        rs = [r for r in results if r.category == cat]
        p = sum(r.passed for r in rs)
        lines.append(f"| {cat} | {len(rs)} | {p} | {100 * p / len(rs):.0f}% | {sum(r.kind == 'wrong_data' for r in rs)} |")
    lines += ["", "| language / data set | cases | pass rate |", "| --- | --- | --- |"]
    for label, key in (("en", "lang"), ("ru", "lang"), ("shop", "dataset"), ("clinic", "dataset"), ("none", "dataset")):
        rs = [r for r in results if getattr(r, key) == label]
        if rs:
            lines.append(f"| {label} | {len(rs)} | {100 * sum(r.passed for r in rs) / len(rs):.0f}% |")
    lines += ["", "## LLM router stats (this evaluation's tenant)", "",
              "| provider | calls | errors | tokens in | tokens out | cost USD | avg latency ms | cache hits |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, p in sorted((stats.get("providers") or {}).items()):
        lines.append(f"| {name} | {p.get('calls')} | {p.get('errors')} | {p.get('tokens_in')} | {p.get('tokens_out')} "
                     f"| {p.get('cost_usd')} | {p.get('avg_latency_ms')} | "
                     f"{p.get('cache_exact', 0)} exact, {p.get('cache_semantic', 0)} semantic |")
    failing = [r for r in results if not r.passed]
    lines += ["", f"## Failing cases ({len(failing)})", "",
              "| id | category | outcome | reason | request |", "| --- | --- | --- | --- | --- |"]
    for r in sorted(failing, key=lambda r: (KINDS.index(r.kind), r.id)):
        lines.append(f"| {r.id} | {r.category} | {r.kind} | {_cell(r.reason[:300])} | {_cell(r.text)} |")
    lines += ["", "Repeat: `make eval` (everything) or `.venv/bin/python -m tests.acceptance.run_eval --only c-agg,v-01 "
              "--out /tmp/EVAL.md` (a slice; see `--help`).", ""]
    return "\n".join(lines)


_BLOCK = re.compile(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->", re.S)


def keep_other_sections(new: str, old: str) -> str:
    """Sections other tools maintain in the same file (``<!-- name:start -->`` ... ``<!-- name:end -->``,
    e.g. the real-model results of `make test-llm`) survive a new report."""
    blocks = [m.group(0) for m in _BLOCK.finditer(old)]
    return new.rstrip("\n") + "".join(f"\n\n{b}" for b in blocks) + "\n" if blocks else new


def _sec(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f} s"


# ---------------------------------------------------------------------------------------------- main

def cleanup_deployment(dep) -> None:
    """The deployment's own topics and Redis keys (its prefix is unique, so nothing else is touched)."""
    import redis
    from confluent_kafka.admin import AdminClient

    prefix = dep.settings.topic_prefix
    admin = AdminClient(client_conf(dep.settings))
    delete_topics(dep.settings, [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)])
    r = redis.Redis.from_url(dep.settings.redis_url)
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i:i + 500])


def _commit() -> str:
    if os.environ.get("AIETL_EVAL_COMMIT"):  # run from an exported tree (git archive), which has no .git
        return os.environ["AIETL_EVAL_COMMIT"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
    except Exception:
        return "unknown"
    # The number measures the code that ran: say when that was more than the commit.
    return f"{sha} + uncommitted changes to {len(dirty)} files" if dirty else sha


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.acceptance.run_eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
                                    "Outcome kinds: " + ", ".join(KINDS) + ". wrong_data = the draft passed QA "
                                    "and ran, but the target holds other rows than the request asked for."))
    p.add_argument("--provider-chain", default="builtin",
                   help="LLM providers of the deployment: 'builtin' (default, offline), a comma list of kinds, "
                        "a JSON list like AIETL_LLM_PROVIDERS_JSON, or @file.json")
    p.add_argument("--corpus", default=str(CORPUS), help="the corpus file (default tests/acceptance/corpus.yaml)")
    p.add_argument("--only", default=None,
                   help="comma-separated case ids, id prefixes (c-agg), categories (join) or data sets (clinic)")
    p.add_argument("--out", default=str(ROOT / "docs" / "EVAL.md"), help="the report (default docs/EVAL.md)")
    p.add_argument("--json", default=None, help="also write every case's result as JSON here")
    p.add_argument("--parallel", type=int, default=4, help="cases in flight at once (default 4)")
    p.add_argument("--draft-timeout", type=float, default=120.0, help="seconds to wait for a draft's outcome")
    p.add_argument("--run-timeout", type=float, default=180.0, help="seconds to wait for a run (or a stream)")
    p.add_argument("--keep", action="store_true", help="leave the targets in place (for a look)")
    p.add_argument("--list", action="store_true", help="print the selected cases and exit (no stack needed)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cases = select(load_corpus(Path(args.corpus)), args.only)
    if not cases:
        print(f"no case matches --only {args.only!r}", file=sys.stderr)
        return 2
    if args.list:
        for c in cases:
            print(f"{c['id']:<12} {c['category']:<14} {c['expect']:<8} {c['text']}")
        return 0

    from infra.stack import up
    from services.core.settings import load_settings
    from services.demo.clinicdata import ensure_clinic_data
    from services.demo.load import ensure_demo_data
    from services.runtime import WORKERS
    from tests.harness import new_deployment
    from tests.pipelines import register_demo_connections

    # A background job ignores SIGINT and SIGTERM would skip the clean-up: both end the run through finally.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    chain = provider_chain_json(args.provider_chain)
    commit = _commit()  # before the run: the code the workers start with
    settings = load_settings()
    up(settings, log=lambda _: None)
    t0 = time.monotonic()
    landing = ensure_demo_data(settings)
    ensure_clinic_data(settings, landing)
    print(f"data: shop + clinic loaded in {time.monotonic() - t0:.1f} s; landing folder {landing}")
    dep = new_deployment(settings.model_copy(update={"llm_providers_json": chain}), "eval", list(WORKERS))
    results: list[Result] = []
    stats: dict = {}
    started = time.monotonic()
    try:
        dep.start()
        register_demo_connections(dep, landing)
        print(f"deployment {dep.settings.topic_prefix} at {dep.base_url}; {len(cases)} cases, "
              f"{args.parallel} at a time")
        runner = Runner(dep, Stores(dep.settings, landing), args.draft_timeout, args.run_timeout, args.keep)
        done = 0
        lock = threading.Lock()

        def one(case):
            nonlocal done
            res = runner.run(case)
            with lock:
                done += 1
                print(f"[{done:>3}/{len(cases)}] {res.id:<12} {res.kind:<13} {res.reason[:110]}", flush=True)
            return res

        pool = ThreadPoolExecutor(max_workers=max(1, args.parallel))
        futures = [pool.submit(one, case) for case in cases]
        try:
            results = [f.result() for f in futures]
        except BaseException:  # interrupted: no new case starts, those in flight stop waiting, then clean up
            runner.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        with runner.http() as c:
            r = c.get("/api/v1/llm/stats")
            stats = r.json() if r.status_code == 200 else {}
    finally:
        dep.stop()
        feeds = [c["feed"]["topic"] for c in cases if c.get("feed")]
        try:
            delete_topics(settings, feeds)
            cleanup_deployment(dep)
        except Exception as exc:
            print(f"cleanup incomplete: {exc}", file=sys.stderr)
    meta = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
            "chain": args.provider_chain, "parallel": args.parallel, "wall_s": time.monotonic() - started,
            "only": args.only}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = out.read_text(encoding="utf-8") if out.exists() else ""
    out.write_text(keep_other_sections(render_report(results, stats, meta), previous), encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1, ensure_ascii=False,
                                              default=str))
    passed = sum(r.passed for r in results)
    wrong = sum(r.kind == "wrong_data" for r in results)
    print(f"\n{passed}/{len(results)} passed, {wrong} wrong data; report written to {out}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted: the deployment was stopped and what the run created removed", file=sys.stderr)
        raise SystemExit(130)
