-- Consumer lag of streaming runs (metrics.v1 StreamLagMeasured), written by the metrics-sink.
-- Same constraints as 001: ClickHouse 18.16 and current releases (no Map, DateTime64, LowCardinality, TTL).
-- The sink is at-least-once: a crash between an insert and its Kafka offset commit inserts the batch again.
-- ReplacingMergeTree collapses such copies (same sorting key, event_id included) when parts merge; until
-- then, count with uniqExact(event_id) or read with FINAL.
CREATE TABLE IF NOT EXISTS {{database}}.stream_lag
(
    ts            DateTime,
    tenant_id     String,
    pipeline_id   String,
    run_id        String,
    topic         String,
    lag           Int64,
    loaded_total  UInt64 DEFAULT 0,
    event_id      String,
    trace_id      String DEFAULT ''
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, pipeline_id, run_id, topic, ts, event_id);
