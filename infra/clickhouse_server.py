"""ClickHouse from the OS package (Debian bookworm ships 18.16.1: ``clickhouse-server`` + ``clickhouse-client``;
newer packages ship a single ``clickhouse`` binary run as ``clickhouse server``).

We run our own server process (never the system service) with ``config.xml``/``users.xml`` written under
``<state_dir>/clickhouse/`` on every start: listen on ``settings.clickhouse_host``, native port
``clickhouse_port``, HTTP port ``clickhouse_http_port``, no interserver port, data/tmp/user files/format
schemas under ``<state_dir>/clickhouse/``, logs in ``<state_dir>/clickhouse/logs/``. After it is healthy
the migrations in ``infra/clickhouse/migrations/`` are applied (see :mod:`infra.clickhouse_migrations`).
"""
from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional
from xml.sax.saxutils import escape

from .base import Component
from .procs import StackError, owned_pid, spawn_detached, stop_pid


def server_argv(config: Path) -> Optional[list[str]]:
    """How to start a ClickHouse server on this machine, or None when none is installed."""
    for name in ("clickhouse-server",):
        found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
        if found:
            return [found, f"--config-file={config}"]
    found = shutil.which("clickhouse") or ("/usr/bin/clickhouse" if Path("/usr/bin/clickhouse").exists() else None)
    if found:
        return [found, "server", f"--config-file={config}"]
    return None


class ClickHouse(Component):
    name = "clickhouse"
    start_timeout = 60.0

    @property
    def host(self) -> str:
        return self.settings.clickhouse_host

    @property
    def port(self) -> int:
        return int(self.settings.clickhouse_port)

    @property
    def http_port(self) -> int:
        return int(self.settings.clickhouse_http_port)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} (http {self.http_port})"

    @property
    def config(self) -> Path:
        return self.dir / "config.xml"

    @property
    def pidfile(self) -> Path:
        return self.dir / "clickhouse.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "clickhouse-server.log"

    @property
    def error_logs(self) -> list[Path]:
        return [self.dir / "logs" / "clickhouse.out", self.dir / "logs" / "clickhouse-server.err.log"]

    def running_pid(self) -> Optional[int]:
        return owned_pid(self.pidfile, ["clickhouse-server", "clickhouse"], self.dir)

    def listening(self) -> bool:
        from .procs import port_open
        return port_open(self.host, self.http_port) or port_open(self.host, self.port)

    def check(self) -> tuple[bool, str]:
        url = f"http://{self.host}:{self.http_port}/ping"
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                body = r.read().decode(errors="replace").strip()
        except (urllib.error.URLError, OSError) as e:
            return False, f"GET {url} failed: {e}"
        if body != "Ok.":
            return False, f"GET {url} answered {body[:80]!r}"
        try:
            from .clickhouse_migrations import http_query
            version = http_query(self.settings, "SELECT version()").strip()
        except Exception as e:  # ping ok but queries fail (e.g. wrong credentials)
            return False, f"ping ok but SELECT failed: {e}"
        return True, f"clickhouse {version}"

    # -- start -----------------------------------------------------------------------------------
    def write_config(self) -> None:
        d = self.dir
        for sub in ("data", "tmp", "user_files", "format_schemas", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        host = escape(self.host)
        config = f"""<?xml version="1.0"?>
<!-- written by aietl infra (infra/clickhouse_server.py); rewritten on every start -->
<yandex>
    <logger>
        <level>information</level>
        <log>{escape(str(d / 'logs' / 'clickhouse-server.log'))}</log>
        <errorlog>{escape(str(d / 'logs' / 'clickhouse-server.err.log'))}</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>{host}</listen_host>
    <http_port>{self.http_port}</http_port>
    <tcp_port>{self.port}</tcp_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>{escape(str(d / 'data'))}/</path>
    <tmp_path>{escape(str(d / 'tmp'))}/</tmp_path>
    <user_files_path>{escape(str(d / 'user_files'))}/</user_files_path>
    <format_schema_path>{escape(str(d / 'format_schemas'))}/</format_schema_path>
    <users_config>{escape(str(d / 'users.xml'))}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <umask>022</umask>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>
    <dictionaries_config>*_dictionary.xml</dictionaries_config>
</yandex>
"""
        self.config.write_text(config)
        # `default` is never left without a password: it is the platform's user unless another is configured.
        s = self.settings
        users = {"default": (s.clickhouse_password or "", "")}
        users[s.clickhouse_user] = (s.clickhouse_password or "", "")
        # The demo connections' user sees only its databases (never the platform's) and may not change
        # settings that lift limits; 18.16 lets every user read `system` whatever allow_databases says.
        demo_dbs = [db.strip() for db in s.clickhouse_demo_databases.split(",")
                    if db.strip() and db.strip() != s.clickhouse_database]
        if s.clickhouse_demo_password and s.clickhouse_demo_user not in users:
            users[s.clickhouse_demo_user] = (s.clickhouse_demo_password, "<allow_databases>" + "".join(
                f"<database>{escape(db)}</database>" for db in demo_dbs) + "</allow_databases>")
        user_xml = "".join(f"""
        <{name}>
            <password>{escape(pw)}</password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>{extra}
        </{name}>""" for name, (pw, extra) in users.items())
        (d / "users.xml").touch(mode=0o600)
        (d / "users.xml").chmod(0o600)  # it holds the users' passwords; the server runs as us
        (d / "users.xml").write_text(f"""<?xml version="1.0"?>
<!-- written by aietl infra (infra/clickhouse_server.py); rewritten on every start -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>{user_xml}
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
""")

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = server_argv(self.config)
        if argv is None:
            self.apt.install(["clickhouse-server", "clickhouse-client"], "ClickHouse")
            argv = server_argv(self.config)
            if argv is None:
                raise StackError("clickhouse-server installed but no server binary found")
        self.write_config()
        self.log(f"starting ClickHouse on {self.address} (data: {self.dir / 'data'})")
        self.proc = spawn_detached(argv, self.dir / "logs" / "clickhouse.out", self.pidfile, cwd=self.dir)

    def stop(self, pid: int) -> bool:
        ok = stop_pid(pid, timeout=60)
        if ok:
            self.pidfile.unlink(missing_ok=True)
        return ok

    def before_health(self, managed: bool) -> None:
        # users.xml follows the settings on every `up` (ClickHouse re-reads it within seconds), so a server
        # of ours started before the stack had passwords gets them without a restart.
        if managed and self.config.exists():
            self.write_config()

    def after_up(self, managed: bool) -> str:
        from .clickhouse_migrations import apply_migrations
        applied = apply_migrations(self.settings, self.log)
        return f"{len(applied)} migration(s) applied" if applied else "migrations up to date"
