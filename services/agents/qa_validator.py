"""qa-validator: parse and safety checks on every generated statement and the code, checks of the artifacts
against the spec (services.agents.qa.spec_checks), then a dry run of extract + transform on a sample in the
sandbox whose result must have the spec's shape. Each failure carries a precise message for the reflector.

Every dialect comes from the spec's engines: what a model says its SQL is written in is never trusted."""
from __future__ import annotations

import asyncio
import json
from typing import Optional

from services.agents.common import current_spec, join_columns
from services.agents.qa import Finding, has_errors
from services.agents.runtime import AgentContext, AgentSpec
from services.core.messages import Message
from services.domain.pipeline import Pipeline

SAMPLE_ROWS = 100


def _target_table(spec: dict) -> str:
    target = spec.get("target") or {}
    return str(target.get("table") or target.get("path") or target.get("topic") or "")


def static_checks(spec: dict, cur: dict, source_columns: Optional[list] = None,
                  join_columns: Optional[dict] = None) -> list[tuple[str, list[Finding]]]:
    from services.agents.qa import spec_checks as sc
    from services.agents.qa.python_rules import check_transform_code
    from services.agents.qa.sql_rules import check_source_sql, check_target_sql, check_transform_sql

    src_dialect, dst_dialect = sc.spec_dialects(spec)
    out: list[tuple[str, list[Finding]]] = [("artifacts", sc.required_artifacts(spec, cur, source_columns))]
    for key in ("extract_sql", "extract_sql_initial"):
        if cur.get(key) and src_dialect:
            out.append((key, check_source_sql(cur[key], src_dialect)))
    target_sql = list(cur.get("target_setup_sql") or []) + ([cur["target_ddl"]] if cur.get("target_ddl") else [])
    for i, sql in enumerate(target_sql if dst_dialect else []):
        out.append((f"target_sql[{i}]", check_target_sql(sql, dst_dialect, _target_table(spec))))
    if cur.get("transform_sql"):
        out.append(("transform_sql", check_transform_sql(cur["transform_sql"])))
    if cur.get("python_code"):
        out.append(("python", check_transform_code(cur["python_code"])))
    out.append(("spec_columns", sc.column_findings(spec, source_columns, join_columns)))
    shape = sc.sql_shape_findings(spec, cur, source_columns, join_columns) + sc.ddl_findings(spec, cur)
    expected = sc.output_names(spec, source_columns, join_columns)
    if expected and dst_dialect:
        shape += sc.ddl_output_findings(spec, json.loads(cur.get("target_columns_json") or "[]"), expected)
    out.append(("spec_shape", shape))
    return out


def _check(name: str, findings: list[Finding]) -> dict:
    errors = [str(f) for f in findings if f.severity == "error"]
    return {"name": name, "passed": not errors, "message": "; ".join(errors) or "ok",
            "warnings": [str(f) for f in findings if f.severity != "error"]}


def build(sources) -> AgentSpec:
    async def on_schema(ctx: AgentContext, event: Message, pipeline: Pipeline) -> None:
        from services.agents.qa.dry_run import dry_run
        from services.agents.qa.store_rules import check_platform_stores

        spec, cur = current_spec(pipeline), pipeline.current
        source_columns = json.loads(cur.get("source_columns_json") or "[]")
        joined = await asyncio.to_thread(join_columns, sources.columns_or_none, pipeline.tenant_id, spec)
        found = await asyncio.to_thread(static_checks, spec, cur, source_columns, joined)
        checks = [_check(name, f) for name, f in found]
        resolve = lambda kind, name: sources.connection(pipeline.tenant_id, {"kind": kind, "connection": name})  # noqa: E731
        stores = await asyncio.to_thread(check_platform_stores, spec, cur, ctx.settings, resolve)
        checks.append(_check("platform_stores", stores))
        from services.agents.schema_analyst import WARNING

        issues = [i for i in event.payload.get("issues") or [] if not i.startswith(WARNING)]
        warnings = [i for i in event.payload.get("issues") or [] if i.startswith(WARNING)]
        checks.append({"name": "schema", "passed": not issues, "message": "; ".join(issues) or "ok",
                       "warnings": warnings})
        rows_in = rows_out = 0
        if all(c["passed"] for c in checks) and not warnings:
            try:
                rows = await asyncio.to_thread(sources.sample, pipeline.tenant_id, spec, cur, SAMPLE_ROWS)
                result = await asyncio.to_thread(dry_run, rows, cur.get("transform_sql"), cur.get("python_code"),
                                                 SAMPLE_ROWS, spec=spec, source_columns=source_columns,
                                                 join_columns=joined,
                                                 target_columns=json.loads(cur.get("target_columns_json") or "[]"))
                rows_in, rows_out = result.rows_in, result.rows_out
                checks.append(_check("dry_run", result.findings) if has_errors(result.findings) or not result.ok
                              else {"name": "dry_run", "passed": True, "warnings": [],
                                    "message": f"{rows_in} sample rows in, {rows_out} out"})
            except Exception as exc:  # the dry run failing to run is itself the finding
                checks.append({"name": "dry_run", "passed": False, "message": f"dry run failed: {exc}",
                               "warnings": []})
        elif all(c["passed"] for c in checks):
            checks.append({"name": "dry_run", "passed": True, "warnings": warnings,
                           "message": "skipped: the source has nothing to sample yet"})
        passed = all(c["passed"] for c in checks)
        await ctx.propose(event, "RecordQaResult", {
            "revision": pipeline.revision, "passed": passed, "checks_json": json.dumps(checks),
            "findings": [f"{c['name']}: {c['message']}" for c in checks if not c["passed"]],
            "dry_run_rows_in": rows_in, "dry_run_rows_out": rows_out})

    return AgentSpec("qa-validator", {"SchemaChecked": on_schema}, warm_up=warm_up)


def warm_up() -> None:
    """The checks' lazy imports, sqlglot's dialects and an in-memory DuckDB, loaded before the first draft."""
    import duckdb
    import sqlglot

    from services.agents.qa import dry_run, spec_checks, sql_rules, store_rules  # noqa: F401

    for dialect in ("postgres", "clickhouse", "duckdb"):
        sqlglot.transpile("SELECT a, count(*) AS n FROM t WHERE b > 1 GROUP BY a", read=dialect, write="duckdb")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SELECT 1").fetchall()
    finally:
        con.close()
