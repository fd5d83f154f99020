"""The platform's own ClickHouse connection (its analytics database), shared by threads under a lock: a
clickhouse-driver client is not safe to use from two threads at once, and one that failed may be
half-broken, so it is dropped and the next call reconnects."""
from __future__ import annotations

import threading
from typing import Callable, Optional

from services.core.settings import Settings


def connect(settings: Settings):
    from clickhouse_driver import Client

    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                  password=settings.clickhouse_password, connect_timeout=5, send_receive_timeout=30)


class LockedClient:
    def __init__(self, settings: Settings, connect_fn: Optional[Callable[[], object]] = None):
        self._connect = connect_fn or (lambda: connect(settings))
        self._client = None
        self._lock = threading.Lock()

    def execute(self, sql: str, params=None):
        with self._lock:
            try:
                self._client = self._client or self._connect()
                return self._client.execute(sql, params)
            except Exception:
                self._drop()
                raise

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            finally:
                self._client = None
