"""The local stack's PostgreSQL superuser, for the few tests that act as the server's administrator (creating
a login role): the platform's own role is no superuser and has no CREATEROLE (docs/SECURITY.md §12). Reached
like `aietl up` reaches it, through the cluster's trusted unix socket as the ``postgres`` user."""
from __future__ import annotations

import psycopg


def superuser(settings) -> psycopg.Connection:
    from infra.postgres_server import Postgres

    server = Postgres(settings, log=lambda _: None)
    return psycopg.connect(host=str(server.socket_dir), port=server.port, user="postgres",
                           dbname=settings.postgres_db, autocommit=True, connect_timeout=10)
