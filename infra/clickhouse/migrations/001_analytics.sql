-- Analytics tables fed by the projector (from runs/metrics/llm/audit topics) and the gateway.
-- Must run on the Debian OS package (ClickHouse 18.16) and on current releases: no Map, no DateTime64,
-- no LowCardinality, no TTL/CODEC; MergeTree with the PARTITION BY / ORDER BY syntax. Timestamps are
-- DateTime in UTC (server timezone); sub-second timings are *_ms UInt64 columns.
-- {{database}} is replaced with settings.clickhouse_database by infra/clickhouse_migrations.py.

CREATE DATABASE IF NOT EXISTS {{database}};

-- One row per run state change (started, succeeded, failed, cancelled); the final one carries totals.
CREATE TABLE IF NOT EXISTS {{database}}.pipeline_runs
(
    ts                DateTime,
    tenant_id         String,
    pipeline_id       String,
    pipeline_version  UInt32 DEFAULT 0,
    run_id            String,
    status            String,
    trigger_kind      String DEFAULT '',
    started_at        DateTime DEFAULT ts,
    finished_at       DateTime DEFAULT toDateTime(0),
    duration_ms       UInt64 DEFAULT 0,
    rows_read         UInt64 DEFAULT 0,
    rows_written      UInt64 DEFAULT 0,
    rows_rejected     UInt64 DEFAULT 0,
    bytes_read        UInt64 DEFAULT 0,
    batches           UInt64 DEFAULT 0,
    error             String DEFAULT '',
    event_id          String DEFAULT '',
    trace_id          String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, pipeline_id, ts, run_id);

-- One row per loaded micro-batch.
CREATE TABLE IF NOT EXISTS {{database}}.run_batches
(
    ts                DateTime,
    tenant_id         String,
    pipeline_id       String,
    run_id            String,
    batch_seq         UInt64,
    status            String DEFAULT 'ok',
    rows_in           UInt64 DEFAULT 0,
    rows_out          UInt64 DEFAULT 0,
    rows_rejected     UInt64 DEFAULT 0,
    bytes             UInt64 DEFAULT 0,
    extract_ms        UInt64 DEFAULT 0,
    transform_ms      UInt64 DEFAULT 0,
    load_ms           UInt64 DEFAULT 0,
    duration_ms       UInt64 DEFAULT 0,
    cursor_value      String DEFAULT '',
    error             String DEFAULT '',
    trace_id          String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, pipeline_id, run_id, batch_seq);

-- One row per LLM call made by the llm-router (including cache hits and failed attempts).
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls
(
    ts                DateTime,
    tenant_id         String,
    pipeline_id       String DEFAULT '',
    correlation_id    String DEFAULT '',
    request_id        String,
    agent             String DEFAULT '',
    task              String DEFAULT '',
    provider          String,
    model             String,
    status            String DEFAULT 'ok',
    cache             String DEFAULT 'miss',
    attempt           UInt32 DEFAULT 1,
    prompt_tokens     UInt64 DEFAULT 0,
    completion_tokens UInt64 DEFAULT 0,
    cost_usd          Float64 DEFAULT 0,
    latency_ms        UInt64 DEFAULT 0,
    error             String DEFAULT '',
    trace_id          String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, provider, model, ts);

-- One row per HTTP request served by the gateway.
CREATE TABLE IF NOT EXISTS {{database}}.api_requests
(
    ts                DateTime,
    tenant_id         String DEFAULT '',
    request_id        String,
    method            String,
    route             String,
    path              String,
    status_code       UInt16,
    duration_ms       UInt64 DEFAULT 0,
    principal         String DEFAULT '',
    auth_kind         String DEFAULT '',
    client_ip         String DEFAULT '',
    user_agent        String DEFAULT '',
    bytes_in          UInt64 DEFAULT 0,
    bytes_out         UInt64 DEFAULT 0,
    error             String DEFAULT '',
    trace_id          String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, route, ts);

-- Every command (accepted or rejected) and security-relevant action; details is a JSON string.
CREATE TABLE IF NOT EXISTS {{database}}.audit_log
(
    ts                DateTime,
    tenant_id         String,
    event_id          String,
    actor             String,
    action            String,
    resource_type     String DEFAULT '',
    resource_id       String DEFAULT '',
    pipeline_id       String DEFAULT '',
    correlation_id    String DEFAULT '',
    causation_id      String DEFAULT '',
    outcome           String DEFAULT 'accepted',
    details           String DEFAULT '',
    trace_id          String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, ts, event_id);

-- Log lines emitted by the executor while running a pipeline.
CREATE TABLE IF NOT EXISTS {{database}}.execution_logs
(
    ts                DateTime,
    tenant_id         String,
    pipeline_id       String,
    run_id            String,
    seq               UInt64 DEFAULT 0,
    level             String,
    component         String DEFAULT '',
    message           String,
    batch_seq         UInt64 DEFAULT 0,
    trace_id          String DEFAULT '',
    span_id           String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, pipeline_id, run_id, ts, seq);

-- Hourly roll-ups. SummingMergeTree adds rows up on merge, which happens eventually: always query with
-- sum(...) ... GROUP BY.
CREATE TABLE IF NOT EXISTS {{database}}.pipeline_runs_hourly
(
    hour                DateTime,
    tenant_id           String,
    pipeline_id         String,
    status              String,
    runs                UInt64,
    total_duration_ms   UInt64,
    total_rows_read     UInt64,
    total_rows_written  UInt64,
    total_rows_rejected UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, pipeline_id, status, hour);

-- (aliases never reuse a source column name: newer ClickHouse analyzers resolve such aliases differently)
CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.pipeline_runs_hourly_mv
TO {{database}}.pipeline_runs_hourly
AS SELECT
    toStartOfHour(ts)  AS hour,
    tenant_id,
    pipeline_id,
    status,
    count()            AS runs,
    sum(duration_ms)   AS total_duration_ms,
    sum(rows_read)     AS total_rows_read,
    sum(rows_written)  AS total_rows_written,
    sum(rows_rejected) AS total_rows_rejected
FROM {{database}}.pipeline_runs
GROUP BY hour, tenant_id, pipeline_id, status;

CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_hourly
(
    hour                    DateTime,
    tenant_id               String,
    provider                String,
    model                   String,
    task                    String,
    calls                   UInt64,
    errors                  UInt64,
    cache_hits              UInt64,
    total_prompt_tokens     UInt64,
    total_completion_tokens UInt64,
    total_cost_usd          Float64,
    total_latency_ms        UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, provider, model, task, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_hourly_mv
TO {{database}}.llm_calls_hourly
AS SELECT
    toStartOfHour(ts)        AS hour,
    tenant_id,
    provider,
    model,
    task,
    count()                  AS calls,
    countIf(status != 'ok')  AS errors,
    countIf(cache != 'miss') AS cache_hits,
    sum(prompt_tokens)       AS total_prompt_tokens,
    sum(completion_tokens)   AS total_completion_tokens,
    sum(cost_usd)            AS total_cost_usd,
    sum(latency_ms)          AS total_latency_ms
FROM {{database}}.llm_calls
GROUP BY hour, tenant_id, provider, model, task;
