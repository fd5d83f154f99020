"""One valid payload per message type (envelope added by the tests). Add one with every new .avsc."""
SAMPLES = {
    "aietl.pipelines.v1.CreatePipeline": {"description": "copy orders to ClickHouse", "name": None,
                                          "labels": {"team": "bi"}},
    "aietl.pipelines.v1.PipelineRequested": {"description": "copy orders to ClickHouse", "name": "orders",
                                             "labels": {}},
    "aietl.pipelines.v1.CommandRejected": {"command_id": "c1", "command_type": "aietl.pipelines.v1.CreatePipeline",
                                           "error_code": "pipeline_exists", "reason": "pipeline p1 already exists"},
}

_LLM = {"provider": "builtin", "model": "builtin-etl-1", "tokens_in": 120, "tokens_out": 300, "cost_usd": 0.0,
        "latency_ms": 4, "cache": "miss"}
_PLAN = {"revision": 1, "spec_json": '{"spec_version": "1"}', "understood": ["from PostgreSQL shop.orders"],
         "confidence": 0.9, "recalled_ids": ["p-123"], "llm": _LLM}
_CLARIFY = {"revision": 1, "question": "Which table should be loaded?", "missing": ["source"], "llm": None}
_REFUSE = {"revision": 1, "reason": "deleting rows of a source is not something aietl does", "llm": None}
_SQL = {"revision": 1, "extract_sql": "SELECT * FROM shop.orders", "transform_sql": None,
        "target_ddl": "CREATE TABLE IF NOT EXISTS analytics.orders (order_id Int64) ENGINE = MergeTree() ORDER BY order_id",
        "source_dialect": "postgres", "target_dialect": "clickhouse", "extract_sql_initial": None,
        "target_setup_sql": ["CREATE DATABASE IF NOT EXISTS analytics"], "notes": [], "llm": _LLM}
_TRANSFORM = {"revision": 1, "python_code": "def transform(batch):\n    return batch\n", "llm": None}
_SCHEMA = {"revision": 1, "source_columns_json": '[["order_id", "bigint"]]',
           "target_columns_json": '[["order_id", "Int64"]]', "pii_json": "[]", "issues": [],
           "sample_rows_json": "[]"}
_QA = {"revision": 1, "passed": True, "checks_json": '[{"name": "parse", "passed": true}]', "findings": [],
       "dry_run_rows_in": 100, "dry_run_rows_out": 100}
_REFLECT = {"revision": 1, "round": 1, "instructions": ["quote the column name"], "llm": None}
_DRAFT = {"revision": 1, "quality_score": 0.93, "checks_passed": ["parse", "read_only", "dry_run"], "passed_qa": True}

SAMPLES.update({
    "aietl.pipelines.v1.RevisePipeline": {"instructions": "only orders from RU", "slot": None},
    "aietl.pipelines.v1.RevisionRequested": {"revision": 2, "instructions": "only orders from RU",
                                             "slot": "source.table"},
    "aietl.pipelines.v1.RecordPlan": _PLAN, "aietl.pipelines.v1.PlanProposed": _PLAN,
    "aietl.pipelines.v1.RecordClarification": _CLARIFY, "aietl.pipelines.v1.ClarificationRequested": _CLARIFY,
    "aietl.pipelines.v1.RecordRefusal": _REFUSE, "aietl.pipelines.v1.RequestRefused": _REFUSE,
    "aietl.pipelines.v1.RecordSql": _SQL, "aietl.pipelines.v1.SqlProposed": _SQL,
    "aietl.pipelines.v1.RecordTransform": _TRANSFORM, "aietl.pipelines.v1.TransformProposed": _TRANSFORM,
    "aietl.pipelines.v1.RecordSchemaCheck": _SCHEMA, "aietl.pipelines.v1.SchemaChecked": _SCHEMA,
    "aietl.pipelines.v1.RecordQaResult": _QA, "aietl.pipelines.v1.QaPassed": _QA,
    "aietl.pipelines.v1.QaFailed": {**_QA, "passed": False, "findings": ["statement 2 of 2: only one statement"]},
    "aietl.pipelines.v1.RecordReflection": _REFLECT, "aietl.pipelines.v1.ReflectionIssued": _REFLECT,
    "aietl.pipelines.v1.CompleteDraft": _DRAFT,
    "aietl.pipelines.v1.FailDrafting": {"revision": 1, "stage": "sql_proposed", "reason": "schema-analyst: KeyError"},
    "aietl.pipelines.v1.ExpireStage": {"revision": 1, "stage": "planned", "timeout_s": 900.0},
    "aietl.pipelines.v1.DraftingFailed": {"revision": 1, "stage": "planned",
                                          "reason": "no answer from the sql-expert within 900 s"},
    "aietl.pipelines.v1.DraftCompleted": {**_DRAFT, "draft_version": 1},
    "aietl.llm.v1.CompleteLlmTask": {
        "task": "plan", "requester": "planner", "prompt_version": "plan-v1", "complexity": "medium",
        "messages": [{"role": "system", "content": "You plan ETL pipelines."}, {"role": "user", "content": "copy"}],
        "input_json": '{"text": "copy orders"}', "context_json": '{"revision": 1}', "repair_round": 0,
        "max_tokens": 2048, "preferred_provider": None},
    "aietl.llm.v1.LlmTaskCompleted": {"task": "plan", "requester": "planner", "output_json": '{"outcome": "plan"}',
                                      "context_json": '{"revision": 1}', "usage": _LLM, "attempts": 1,
                                      "fallbacks": []},
    "aietl.llm.v1.LlmTaskFailed": {"task": "plan", "requester": "planner", "error_code": "budget_exceeded",
                                   "message": "tenant acme spent 5.00 of its 5.00 USD daily budget",
                                   "retryable": False, "context_json": "{}"},
})

_ARTIFACTS = '{"draft_version": 1, "spec_json": "{}", "extract_sql": "SELECT 1"}'
SAMPLES.update({
    "aietl.pipelines.v1.DeployPipeline": {"version": 1},
    "aietl.pipelines.v1.RollbackPipeline": {"version": 1},
    "aietl.pipelines.v1.PausePipeline": {},
    "aietl.pipelines.v1.ResumePipeline": {},
    "aietl.pipelines.v1.DeletePipeline": {},
    "aietl.pipelines.v1.TriggerRun": {"run_id": "r1", "trigger_kind": "manual", "params_json": '{"file": "a.csv"}',
                                      "slot": None},
    "aietl.pipelines.v1.PipelineDeployed": {"version": 2, "previous_version": 1, "artifacts_json": _ARTIFACTS},
    "aietl.pipelines.v1.PipelineRolledBack": {"version": 1, "from_version": 2, "artifacts_json": _ARTIFACTS},
    "aietl.pipelines.v1.PipelinePaused": {},
    "aietl.pipelines.v1.PipelineResumed": {},
    "aietl.pipelines.v1.PipelineDeleted": {},
    "aietl.pipelines.v1.RunRequested": {"run_id": "r1", "version": 1, "trigger_kind": "cron", "params_json": "{}",
                                        "slot": "2026-11-24T02:00:00+00:00"},
    "aietl.runs.v1.RunStarted": {"run_id": "r1", "version": 1, "attempt": 1, "cursor_from": None,
                                 "trigger_kind": "cron"},
    "aietl.runs.v1.BatchLoaded": {"run_id": "r1", "batch_no": 0, "rows": 1000, "rows_written": 1000,
                                  "bytes": 52000, "cursor": "2026-11-01 10:00:00"},
    "aietl.runs.v1.RunSucceeded": {"run_id": "r1", "rows_read": 1000, "rows_written": 1000, "bytes": 52000,
                                   "batches": 1, "high_water_mark": "2026-11-01 10:00:00", "duration_ms": 120,
                                   "version": 1, "trigger_kind": "cron"},
    "aietl.runs.v1.RunFailed": {"run_id": "r1", "error_class": "OperationalError", "message": "connection refused",
                                "retryable": True, "attempt": 1, "final": False, "version": 1,
                                "trigger_kind": "manual"},
    "aietl.runs.v1.RunCancelled": {"run_id": "r1", "reason": "cancelled by user:anonymous", "version": 1,
                                   "trigger_kind": "webhook"},
})

SAMPLES.update({
    "aietl.pipelines.v1.TriggerScheduledRun": {"run_id": "r2", "trigger_kind": "cron", "params_json": "{}",
                                               "slot": "2026-11-24T02:00:00+00:00"},
    "aietl.pipelines.v1.TriggerRunFromMessage": {"run_id": "r3", "trigger_kind": "kafka",
                                                 "params_json": '{"status": "paid"}', "slot": None},
    "aietl.pipelines.v1.CancelRun": {"run_id": "r1", "reason": "cancelled by user:anonymous"},
    "aietl.pipelines.v1.RunCancelRequested": {"run_id": "r1", "reason": "cancelled by user:anonymous"},
    "aietl.metrics.v1.BatchMeasured": {"run_id": "r1", "batch_no": 0, "rows_in": 1000, "rows_out": 990,
                                       "bytes": 52000, "extract_ms": 12, "transform_ms": 3, "load_ms": 40,
                                       "cursor": "2026-11-01 10:00:00"},
    "aietl.metrics.v1.StreamLagMeasured": {"run_id": "r1", "topic": "shop.clicks", "lag": 250, "loaded_total": 19750},
    "aietl.metrics.v1.RunLogged": {"run_id": "r1", "seq": 3, "level": "INFO", "message": "batch 2 loaded: 1000 rows",
                                   "batch_no": 2},
})

SAMPLES.update({
    "aietl.audit.v1.AuditRecorded": {"action": "DeployPipeline", "outcome": "rejected", "subject": "p1",
                                     "reason": "not_deployable: no QA-passed version", "source_address": "10.0.0.7",
                                     "request_id": "req-1", "recorder": "pipeline-aggregate"},
})
