"""PostgreSQL from the OS packages, as our own cluster (never the system cluster/service).

``initdb`` into ``<state_dir>/postgres/data`` and ``pg_ctl start`` on ``postgres_host:postgres_port`` with
the unix socket in ``<state_dir>/postgres/run`` (or a short folder under /tmp when that path would be too
long for a socket). PostgreSQL refuses to run as root, so when we are root everything runs as the
``postgres`` system user (created when missing) via ``runuser``; ``<state_dir>/postgres`` is chowned to it
and every ancestor folder of the state dir gets the "others may traverse" bit (``chmod o+x``: search, not
list) so that user can reach it. Local socket connections are ``trust`` (used to bootstrap), TCP uses
scram-sha-256; ``up`` ensures role ``postgres_user`` (LOGIN, no superuser, with ``postgres_password``) and
database ``postgres_db`` owned by it, and the demo connections' role ``postgres_demo_user`` (see _demo_role).
"""
from __future__ import annotations

import glob
import hashlib
import os
import pwd
import re
import shutil
from pathlib import Path
from typing import Optional

from .base import Component
from .procs import StackError, as_user, ensure_traversable, is_root, pid_alive, proc_cmdline, proc_exe, \
    read_pid, run, stop_pid

SERVICE_USER = "postgres"


def find_bindir(version: Optional[str] = None) -> Optional[Path]:
    """Folder holding initdb/pg_ctl/postgres (Debian keeps them off PATH), newest version first."""
    cands = []
    for p in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        v = Path(p).parent.parent.name
        cands.append((tuple(int(x) for x in re.findall(r"\d+", v)) or (0,), v, Path(p).parent))
    cands.sort(reverse=True)
    if version:
        for _, v, d in cands:
            if v == version:
                return d
    if cands:
        return cands[0][2]
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    return None


class Postgres(Component):
    name = "postgres"
    start_timeout = 60.0

    @property
    def host(self) -> str:
        return self.settings.postgres_host

    @property
    def port(self) -> int:
        return int(self.settings.postgres_port)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        d = self.dir / "run"
        if len(str(d / f".s.PGSQL.{self.port}.lock")) > 100:
            h = hashlib.sha1(str(self.dir).encode()).hexdigest()[:10]
            d = Path("/tmp") / f"aietl-pg-{h}"
        return d

    @property
    def user(self) -> Optional[str]:
        return SERVICE_USER if is_root() else None

    def running_pid(self) -> Optional[int]:
        pid = read_pid(self.data / "postmaster.pid")
        if pid and pid_alive(pid):
            ident = proc_cmdline(pid) + " " + proc_exe(pid)
            if "postgres" in ident or "postmaster" in ident or not ident.strip():
                return pid
        return None

    def check(self) -> tuple[bool, str]:
        import psycopg
        s = self.settings
        try:
            with psycopg.connect(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                                 password=s.postgres_password, dbname=s.postgres_db, connect_timeout=3) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
                conn.execute("SELECT 1").fetchone()
        except Exception as e:
            return False, f"connect/SELECT 1 failed: {str(e).strip()[:300]}"
        return True, f"postgresql {version}"

    # -- start -----------------------------------------------------------------------------------
    def _ensure_user(self) -> None:
        if not is_root():
            return
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            self.log(f"creating system user {SERVICE_USER}")
            run(["useradd", "--system", "--user-group", "--home-dir", "/var/lib/postgresql",
                 "--shell", "/bin/sh", SERVICE_USER])

    def _chown(self, path: Path) -> None:
        if is_root():
            pw = pwd.getpwnam(SERVICE_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _run(self, argv, **kw):
        return run(as_user(self.user, argv), cwd=self.dir, **kw)

    def start(self) -> None:
        version = None
        if (self.data / "PG_VERSION").exists():
            version = (self.data / "PG_VERSION").read_text().strip()
        bindir = find_bindir(version)
        if bindir is None:
            self.apt.install(["postgresql"], "PostgreSQL")
            bindir = find_bindir(version)
            if bindir is None:
                raise StackError("postgresql installed but initdb not found under /usr/lib/postgresql/*/bin")
        if version and bindir.parent.name != version and (bindir.parent.parent.name == "postgresql"):
            raise StackError(f"{self.data} was created by PostgreSQL {version} but only {bindir} is installed")
        self._ensure_user()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        for p in (self.dir, self.dir / "logs", self.socket_dir):
            self._chown(p)
        if self.log_file.exists():
            self._chown(self.log_file)
        if is_root():
            ensure_traversable(self.dir, self.log)

        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():  # a half-made cluster from an interrupted initdb
                shutil.rmtree(self.data)
            self.log(f"initdb {self.data}")
            self._run([bindir / "initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--no-locale",
                       "--auth-local=trust", "--auth-host=scram-sha-256"], timeout=300)
        conf = self.data / "postgresql.conf"
        include = "include_if_exists = 'aietl.conf'"
        text = conf.read_text()
        if include not in text:
            conf.write_text(text.rstrip("\n") + f"\n\n# added by aietl infra\n{include}\n")
        listen = "localhost" if self.host in ("localhost",) else self.host
        (self.data / "aietl.conf").write_text(
            "# written by aietl infra (infra/postgres_server.py); rewritten on every start\n"
            f"listen_addresses = '{listen}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "max_connections = 200\n"
            "shared_buffers = 128MB\n"
            "password_encryption = 'scram-sha-256'\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n")
        self._chown(self.data / "aietl.conf")
        # a postmaster.pid left by a crash: postgres itself checks whether that pid is alive and removes it
        self.log(f"starting PostgreSQL on {self.address} (data: {self.data})")
        self._run([bindir / "pg_ctl", "-D", self.data, "-l", self.log_file, "-w", "-t", "60", "start"],
                  timeout=120)

    def _bootstrap(self) -> None:
        """Create/refresh the application role and database through the trusted local socket."""
        import psycopg
        from psycopg import sql
        s = self.settings
        with psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True, connect_timeout=10) as conn:
            # The platform owns its database and schemas, which is all it needs: no superuser, no CREATEROLE.
            self._role(conn, s.postgres_user, s.postgres_password)
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (s.postgres_db,)).fetchone():
                self.log(f"creating database {s.postgres_db}")
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(s.postgres_db), sql.Identifier(s.postgres_user)))
            if s.postgres_demo_user != s.postgres_user:
                self._role(conn, s.postgres_demo_user, s.postgres_demo_password)
        if s.postgres_demo_user != s.postgres_user:
            self._demo_grants()

    @staticmethod
    def _role(conn, name: str, password: str) -> None:
        from psycopg import sql
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                             "NOBYPASSRLS PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))

    def _demo_grants(self) -> None:
        """What the demo connections' role may do in the platform's database: connect, create schemas of its
        own and tables in `public` (pipeline targets), and keep the executor's load bookkeeping
        (aietl_meta.loaded_batches, made here as the platform role so it owns it); nothing else of aietl_meta
        (keys, connections, hooks). Reading the demo data is granted by its loader (services/demo/load.py)."""
        import psycopg
        from psycopg import sql

        from services.executor.writers import META_SCHEMA, PG_BOOKKEEPING, PG_META_DDL
        s = self.settings
        demo, db = sql.Identifier(s.postgres_demo_user), sql.Identifier(s.postgres_db)
        with psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname=s.postgres_db,
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            # TEMPORARY: a merge load stages its batch in a temp table (services/executor/writers.py).
            conn.execute(sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(db, demo))
            # Targets in `public` (PostgreSQL 15 lets only its owner create there); the platform role is a
            # member of the demo role so the operator and the tests can read and drop what the demo wrote.
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(demo))
            conn.execute(sql.SQL("GRANT {} TO {}").format(demo, sql.Identifier(s.postgres_user)))
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(s.postgres_user)))
            conn.execute(PG_META_DDL)
            conn.execute("RESET ROLE")
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(META_SCHEMA), demo))
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {}.{} TO {}").format(
                sql.Identifier(META_SCHEMA), sql.Identifier(PG_BOOKKEEPING), demo))

    def stop(self, pid: int) -> bool:
        bindir = find_bindir((self.data / "PG_VERSION").read_text().strip()
                             if (self.data / "PG_VERSION").exists() else None)
        if bindir is not None:
            try:
                self._run([bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop"],
                          timeout=90)
            except StackError as e:
                self.log(f"pg_ctl stop failed ({e}); signalling {pid}")
        import signal
        return stop_pid(pid, timeout=30, sig=signal.SIGINT)  # SIGINT = fast shutdown

    def before_health(self, managed: bool) -> None:
        if managed:  # our cluster: (re)apply role, password and database from the current settings
            from .procs import port_open, wait_until
            wait_until(lambda: port_open(self.host, self.port), self.start_timeout)
            self._bootstrap()
