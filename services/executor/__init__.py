"""The executor's data plane: bounded Arrow batches from a source, through the transform, into a target.

``run_pipeline`` (plan.py) wires one run; readers.py, transform.py and writers.py are usable alone. The
Kafka/Faust glue and run events live elsewhere. Drivers (psycopg, clickhouse-driver, pyarrow, duckdb,
confluent-kafka) are imported inside the functions that use them, so importing this package is cheap.
"""
from services.executor.plan import RunTotals, run_pipeline
from services.executor.transform import apply_transform

__all__ = ["RunTotals", "apply_transform", "run_pipeline"]
