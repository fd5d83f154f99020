-- audit_log as the audit.v1 records fill it (written by the metrics-sink): why an action was refused, where
-- the request came from, its gateway request id, and which process recorded it. The sink is
-- at-least-once, so a record may be stored twice after a crash: read with LIMIT 1 BY event_id.
ALTER TABLE {{database}}.audit_log
    ADD COLUMN reason String DEFAULT '',
    ADD COLUMN source_address String DEFAULT '',
    ADD COLUMN request_id String DEFAULT '',
    ADD COLUMN recorder String DEFAULT '';
