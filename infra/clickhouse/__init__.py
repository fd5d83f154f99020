"""ClickHouse DDL for the analytics side (a package only so the .sql files ship in wheels)."""
