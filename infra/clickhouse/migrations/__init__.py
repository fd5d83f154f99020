"""NNN_name.sql migrations, applied in order by infra.clickhouse_migrations."""
