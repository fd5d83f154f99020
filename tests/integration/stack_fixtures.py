"""Connections to the real stack for data-plane tests (executor readers/writers, the streaming runner).

A test module imports what it uses and sets ``TENANT``; each fixture uses the importing module's tenant.
Scratch schemas and databases are created per test and dropped afterwards.
"""
import uuid

import pytest

from services.connectors.registry import Connection
from services.core.settings import load_settings


def uid() -> str:
    return uuid.uuid4().hex[:10]


class Registry:
    """The part of ConnectionRegistry the data plane uses (resolve by name), over connections to real servers."""

    def __init__(self, *conns: Connection):
        self.by_name = {c.name: c for c in conns}

    def resolve(self, tenant, kind=None, name=None):
        conn = self.by_name[name]
        assert conn.kind == kind
        return conn


def _tenant(request) -> str:
    return getattr(request.module, "TENANT", "t-dataplane")


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def pg(settings, request):
    return Connection(_tenant(request), "pg", "postgres",
                      {"host": settings.postgres_host, "port": settings.postgres_port,
                       "database": settings.postgres_db, "user": settings.postgres_user},
                      {"password": settings.postgres_password})


@pytest.fixture(scope="module")
def ch(settings, request):
    return Connection(_tenant(request), "ch", "clickhouse",
                      {"host": settings.clickhouse_host, "port": settings.clickhouse_port,
                       "user": settings.clickhouse_user},
                      {"password": settings.clickhouse_password} if settings.clickhouse_password else {})


@pytest.fixture(scope="module")
def kafka(settings, request):
    return Connection(_tenant(request), "kf", "kafka", {"bootstrap": settings.kafka_bootstrap})


@pytest.fixture
def pgdb(settings):
    """A psycopg session (autocommit) and a fresh schema name; the schema and its bookkeeping go afterwards."""
    import psycopg

    schema = f"ex_{uid()}"
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
        yield db, schema
        db.execute(f"DROP SCHEMA {schema} CASCADE")
        if db.execute("SELECT to_regclass('aietl_meta.loaded_batches')").fetchone()[0]:
            db.execute("DELETE FROM aietl_meta.loaded_batches WHERE target LIKE %s", (schema + ".%",))


@pytest.fixture
def chdb(ch):
    """A ClickHouse client and a fresh database, dropped afterwards."""
    from clickhouse_driver import Client

    client = Client(ch.param("host"), port=ch.param("port"), user=ch.param("user"),
                    password=ch.secret("password", ""))
    db = f"ex_{uid()}"
    client.execute(f"CREATE DATABASE {db}")
    yield client, db
    client.execute(f"DROP DATABASE IF EXISTS {db}")
    client.disconnect()
