"""Redis from the OS package (``redis-server``), our own instance on the host/port of ``settings.redis_url``.

Layout under ``<state_dir>/redis/``: ``redis.conf`` (rewritten on every start), ``data/`` (RDB + AOF),
``logs/redis.log``, ``redis.pid``. The instance runs in the foreground of its own session (not the
system service).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlparse

from .base import Component
from .procs import owned_pid, spawn_detached, stop_pid


class Redis(Component):
    name = "redis"
    start_timeout = 30.0

    @property
    def _url(self):
        return urlparse(self.settings.redis_url)

    @property
    def host(self) -> str:
        return self._url.hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return self._url.port or 6379

    @property
    def password(self) -> Optional[str]:
        return unquote(self._url.password) if self._url.password else None

    @property
    def pidfile(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "redis.log"

    @property
    def out_file(self) -> Path:
        return self.dir / "logs" / "redis.out"

    @property
    def error_logs(self) -> list[Path]:
        return [self.out_file, self.log_file]

    def running_pid(self) -> Optional[int]:
        # redis-server rewrites its process title to "redis-server host:port" and chdirs to its data dir
        return owned_pid(self.pidfile, ["redis-server", "redis-check-rdb"], self.dir)

    def check(self) -> tuple[bool, str]:
        import redis
        try:
            client = redis.Redis(host=self.host, port=self.port, password=self.password,
                                 socket_timeout=3, socket_connect_timeout=3)
            try:
                client.ping()
                version = client.info("server").get("redis_version", "?")
            finally:
                client.close()
        except Exception as e:
            return False, f"PING failed: {e}"
        return True, f"redis {version}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            self.apt.install(["redis-server"], "Redis")
            binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "redis.conf"
        lines = [
            "# written by aietl infra (infra/redis_server.py); rewritten on every start",
            f"bind {self.host}",
            f"port {self.port}",
            "protected-mode no",
            "daemonize no",
            "supervised no",
            f"dir {data}",
            f"logfile {self.log_file}",
            "loglevel notice",
            "databases 16",
            # the read model stores its Kafka offsets in Redis: keep it across restarts
            "appendonly yes",
            "appendfsync everysec",
            "save 3600 1 300 100 60 10000",
            "tcp-keepalive 60",
        ]
        if self.password:
            lines.append(f'requirepass "{self.password}"')
        lines += [f"user {name} {rules}" for name, rules in self._role_users()]
        conf.touch(mode=0o600)
        conf.chmod(0o600)  # it holds every role's password; the server runs as us
        conf.write_text("\n".join(lines) + "\n")
        self.log(f"starting Redis on {self.address} (data: {data})")
        self.proc = spawn_detached([binary, str(conf)], self.out_file, self.pidfile, cwd=self.dir)

    def _role_users(self) -> list[tuple[str, str]]:
        """The per-role ACL users (services/core/stack_secrets.py), when this server has the stack's derived
        password; a password given by the user means every process shares that one, as before."""
        from services.core.stack_secrets import password, redis_acl

        if not self.password or self.password != password(self.settings.state_dir, "redis"):
            return []
        return redis_acl(self.settings.state_dir)

    def before_health(self, managed: bool) -> None:
        # A server of ours started before the stack had passwords: give it the password now (the config
        # file gets it at its next start), so clients that derive it are not locked out.
        if not (managed and self.password):
            return
        import redis

        from .procs import port_open, wait_until
        wait_until(lambda: port_open(self.host, self.port), self.start_timeout)
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        except redis.exceptions.AuthenticationError:
            pass  # it has a password already
        except redis.exceptions.ResponseError as e:
            if "NOAUTH" not in str(e):
                raise
        else:
            self.log("redis: setting the stack's password on the running server")
            client.config_set("requirepass", self.password)
        finally:
            client.close()
        # A running server of ours gets the current role users too (new roles, changed rules), as the
        # config file does at its next start.
        if users := self._role_users():
            client = redis.Redis(host=self.host, port=self.port, password=self.password, socket_timeout=3,
                                 socket_connect_timeout=3)
            try:
                for name, rules in users:
                    client.execute_command("ACL", "SETUSER", name, "reset", *rules.split())
            finally:
                client.close()

    def stop(self, pid: int) -> bool:
        ok = stop_pid(pid, timeout=30)
        if ok:
            self.pidfile.unlink(missing_ok=True)
        return ok
