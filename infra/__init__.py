"""The local stack without Docker (Kafka, Redis, ClickHouse, PostgreSQL): see :mod:`infra.stack`.

Importing this package does nothing; ``from infra.stack import up, down, status``.
"""
