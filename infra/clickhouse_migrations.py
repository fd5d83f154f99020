"""ClickHouse DDL migrations: ``infra/clickhouse/migrations/NNN_name.sql`` applied in order, each once.

Applied migrations are recorded in ``<clickhouse_database>.schema_migrations`` (version, name, checksum,
applied_at). ``{{database}}`` in a migration is replaced by ``settings.clickhouse_database``. Statements
are separated by ``;`` (quotes and comments are respected). Talks HTTP so it works with any server version
(the OS package is 18.16) and needs no driver.
"""
from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .procs import StackError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "clickhouse" / "migrations"
_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_\-]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def sql(self, database: str) -> str:
        return self.path.read_text(encoding="utf-8").replace("{{database}}", database)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for p in sorted(directory.glob("*.sql")):
        m = _NAME.match(p.name)
        if not m:
            raise StackError(f"migration file {p} must be named NNN_name.sql")
        found.append(Migration(int(m.group(1)), p.stem, p))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StackError(f"duplicate migration numbers in {directory}")
    return sorted(found, key=lambda m: m.version)


def split_statements(sql: str) -> list[str]:
    """Split on ``;`` outside quotes and comments; drop empty / comment-only pieces."""
    out, buf, i, n = [], [], 0, len(sql)
    has_code = False
    while i < n:
        c = sql[i]
        if c in ("'", '"', "`"):
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            buf.append(sql[i:j + 1])
            has_code = True
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            buf.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            buf.append(sql[i:j])
            i = j
        elif c == ";":
            if has_code:
                out.append("".join(buf).strip())
            buf, has_code = [], False
            i += 1
        else:
            if not c.isspace():
                has_code = True
            buf.append(c)
            i += 1
    if has_code:
        out.append("".join(buf).strip())
    return out


def http_query(settings, sql: str, database: Optional[str] = None, timeout: float = 60) -> str:
    """Run one statement over the HTTP interface; returns the body (TabSeparated)."""
    params = {"user": settings.clickhouse_user}
    if settings.clickhouse_password:
        params["password"] = settings.clickhouse_password
    if database:
        params["database"] = database
    url = f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, data=sql.encode("utf-8"), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace").strip()
        raise StackError(f"ClickHouse rejected: {sql.strip()[:300]}\n-> {body[:2000]}") from e
    except (urllib.error.URLError, OSError) as e:
        raise StackError(f"ClickHouse HTTP {url.split('?')[0]} unreachable: {e}") from e


def applied_versions(settings) -> dict[int, str]:
    db = settings.clickhouse_database
    exists = http_query(settings, f"EXISTS TABLE {db}.schema_migrations").strip()
    if exists != "1":
        return {}
    rows = http_query(settings, f"SELECT version, checksum FROM {db}.schema_migrations ORDER BY version")
    out = {}
    for line in rows.splitlines():
        if line.strip():
            v, c = line.split("\t")
            out[int(v)] = c
    return out


def apply_migrations(settings, log: Callable[[str], None] = print,
                     directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order; returns the names applied now."""
    db = settings.clickhouse_database
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db):
        raise StackError(f"clickhouse_database {db!r} is not a plain identifier")
    http_query(settings, f"CREATE DATABASE IF NOT EXISTS {db}")
    http_query(settings, f"""CREATE TABLE IF NOT EXISTS {db}.schema_migrations
        (version UInt32, name String, checksum String, applied_at DateTime DEFAULT now())
        ENGINE = MergeTree() ORDER BY version""")
    done = applied_versions(settings)
    applied = []
    for m in discover(directory):
        if m.version in done:
            if done[m.version] != m.checksum:
                log(f"warning: ClickHouse migration {m.name} changed after it was applied (not re-run); "
                    "add a new migration instead")
            continue
        log(f"ClickHouse migration {m.name}")
        for stmt in split_statements(m.sql(db)):
            http_query(settings, stmt, database=db)
        name = m.name.replace("'", "")
        http_query(settings, f"INSERT INTO {db}.schema_migrations (version, name, checksum) "
                             f"VALUES ({m.version}, '{name}', '{m.checksum}')")
        applied.append(m.name)
    return applied
