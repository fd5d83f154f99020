"""Connections cannot be turned against the host (issue 9, item 4) and secrets are found by shape (item 5).

Private-range and metadata addresses are tested as units of the address check with an injected resolver:
nothing here sends a packet outside 127.0.0.0/8. Local listeners on 127.0.0.1 prove that a blocked request
never arrived.
"""
from __future__ import annotations

import ipaddress
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.connectors import egress, introspect
from services.connectors.egress import BlockedAddress, EgressPolicy, address_class
from services.connectors.registry import Connection, InvalidConnection, _public, validate

CLASSES = [
    ("127.0.0.1", "loopback"), ("127.1.2.3", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("2002:7f00:1::", "loopback"), ("::127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd12::1", "private"),
    ("::ffff:192.168.0.1", "private"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("100.64.0.1", "cgnat"), ("100.127.255.254", "cgnat"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::a9fe:a9fe", "metadata"), ("100.100.100.200", "metadata"),
    ("8.8.8.8", None), ("2606:4700::1111", None), ("::ffff:8.8.8.8", None),
]


@pytest.mark.parametrize("address,why", CLASSES)
def test_every_address_class_is_named(address, why):
    assert address_class(ipaddress.ip_address(address)) == why


def _policy(answers: dict, allow: str = "", denied=()) -> EgressPolicy:
    def resolve(host, port):
        if host not in answers:
            raise OSError("no such host")
        return answers[host]
    return EgressPolicy.parse(allow, denied, resolve)


def test_every_resolved_address_is_checked_not_just_the_first():
    policy = _policy({"api.test": ["93.184.216.34"], "mixed.test": ["93.184.216.34", "10.0.0.7"],
                      "mapped.test": ["::ffff:169.254.169.254"], "rebind.test": ["127.0.0.1"]})
    assert policy.check("api.test", 443) == ["93.184.216.34"]
    for host, why in (("mixed.test", "private"), ("mapped.test", "metadata"), ("rebind.test", "loopback"),
                      ("metadata.google.internal", "metadata"), ("nowhere.test", "dns")):
        with pytest.raises(BlockedAddress) as err:
            policy.check(host, 80)
        assert err.value.reason == why, host


def test_numeric_spellings_of_loopback_are_resolved_then_blocked():
    # getaddrinfo turns these into 127.0.0.1 locally (no packet is sent): the check sees what the socket would.
    policy = EgressPolicy.parse("", (), egress.system_resolver)
    for host in ("2130706433", "0x7f000001", "127.1", "localhost"):
        with pytest.raises(BlockedAddress) as err:
            policy.check(host, 80)
        assert err.value.reason == "loopback", host


def test_the_allow_list_opens_intranets_but_never_metadata_nor_the_platform():
    policy = _policy({"wiki.corp": ["10.2.3.4"], "meta.corp": ["169.254.169.254"], "named.corp": ["192.168.9.9"]},
                     allow="10.0.0.0/8,169.254.0.0/16,named.corp,127.0.0.0/8", denied={("loopback", 8123)})
    assert policy.check("wiki.corp", 443) == ["10.2.3.4"]
    assert policy.check("named.corp", 80) == ["192.168.9.9"]
    with pytest.raises(BlockedAddress, match="metadata"):
        policy.check("meta.corp", 80)
    with pytest.raises(BlockedAddress) as err:  # ClickHouse's HTTP port stays closed inside an allowed net
        policy.check("127.0.0.1", 8123)
    assert err.value.reason == "platform"


def test_only_http_urls_are_fetched():
    for url in ("file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://example.com/x", "/relative"):
        with pytest.raises(BlockedAddress):
            egress.check_url(url, _policy({}))


# ---------------------------------------------------------------- against local listeners


class _Listener:
    """A 127.0.0.1 HTTP server that records every request; ``answer(path) -> (status, headers, body)``."""

    def __init__(self, answer):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
                status, headers, body = answer(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def no_allow_list(monkeypatch):
    monkeypatch.delenv("AIETL_HTTP_ALLOW_NETWORKS", raising=False)


def test_loopback_ssrf_sends_nothing(no_allow_list):
    api = _Listener(lambda path: (200, {}, b'{"data": [{"id": 1}]}'))
    try:
        conn = Connection("t", "api", "http", {"base_url": api.base, "endpoints": ["/x"]}, {"api_key": "k-123456"})
        ok, detail, reason, latency = introspect.check(conn)
        assert (ok, reason) == (False, "blocked") and "loopback" in detail and str(api.port) not in detail
        with pytest.raises(BlockedAddress):
            introspect.sample_rows(conn, "/x", 1)
        from services.executor.readers import read_http

        with pytest.raises(BlockedAddress):
            list(read_http(conn, "/x"))
        assert api.requests == []
    finally:
        api.close()


def test_redirects_are_followed_one_checked_hop_at_a_time(no_allow_list):
    other = _Listener(lambda path: (200, {}, b'{"data": [{"id": 2}]}'))
    hops = {"/to-private": "http://intranet.test/admin", "/to-metadata": "http://169.254.169.254/latest/",
            "/to-other-port": f"{other.base}/data", "/loop": "/loop"}
    api = _Listener(lambda path: (302, {"Location": hops[path]}, b"") if path in hops
                    else (200, {}, b'{"data": [{"id": 1}]}'))
    policy = _policy({"intranet.test": ["10.9.9.9"]}, allow="127.0.0.1/32")
    try:
        with egress.client(policy) as http:
            for path, why in (("/to-private", "private"), ("/to-metadata", "metadata")):
                with pytest.raises(BlockedAddress) as err:
                    egress.fetch(http, api.base + path, base_url=api.base, credentials={"Authorization": "Bearer t"},
                                 policy=policy)
                assert err.value.reason == why
            # Another origin (here another port of an allowed host) is fetched without the credentials.
            got = egress.fetch(http, api.base + "/to-other-port", base_url=api.base,
                               credentials={"Authorization": "Bearer secret-token"}, policy=policy)
            assert got.json() == {"data": [{"id": 2}]}
            assert other.requests == [{"path": "/data", "auth": None}]
            assert api.requests[-1]["auth"] == "Bearer secret-token"
            with pytest.raises(egress.FetchError, match="redirects"):
                egress.fetch(http, api.base + "/loop", base_url=api.base, credentials={}, policy=policy)
    finally:
        api.close()
        other.close()


def test_a_dns_answer_that_changes_after_the_check_is_not_followed():
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])  # the check sees loopback (allowed), the connect a private IP
    api = _Listener(lambda path: (200, {}, b"{}"))
    policy = EgressPolicy.parse("127.0.0.1/32", (), lambda host, port: next(answers))
    try:
        with egress.client(policy) as http, pytest.raises(BlockedAddress):
            egress.fetch(http, f"http://rebind.test:{api.port}/", base_url=api.base, credentials={}, policy=policy)
        assert api.requests == []
    finally:
        api.close()


def test_responses_are_bounded():
    api = _Listener(lambda path: (200, {}, b"[" + b"1," * 5000 + b"1]"))
    policy = EgressPolicy.parse("127.0.0.1/32")
    try:
        with egress.client(policy) as http, pytest.raises(egress.ResponseTooLarge):
            egress.fetch(http, api.base, base_url=api.base, credentials={}, policy=policy, max_bytes=1000)
    finally:
        api.close()


def test_a_connection_test_does_not_tell_open_from_closed_ports(monkeypatch):
    import socket

    monkeypatch.setenv("AIETL_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    answers = []
    for port in (closed, 1):
        conn = Connection("t", "api", "http", {"base_url": f"http://127.0.0.1:{port}", "timeout_s": 2}, {})
        answers.append(introspect.check(conn)[:3])
    pg = Connection("t", "pg", "postgres", {"host": "127.0.0.1", "port": closed, "database": "x", "user": "x"}, {})
    answers.append(introspect.check(pg)[:3])
    assert all(a == (False, "not reachable (unreachable)", "unreachable") for a in answers), answers


# ---------------------------------------------------------------- file connections


def test_the_root_folder_is_refused_at_registration_and_when_reading(tmp_path):
    for folder in ("/", "/etc", "//", "/tmp/.."):
        with pytest.raises(InvalidConnection, match="not inside a folder an admin allowed"):
            validate("files", "file", {"folder": folder}, {})
    rogue = Connection("t", "files", "file", {"folder": "/"}, {})  # as if stored before the rule
    with pytest.raises(InvalidConnection):
        introspect.list_tables(rogue)
    from services.executor.readers import ReaderError, read_file

    with pytest.raises(ReaderError, match="not inside"):
        list(read_file(rogue, "etc/passwd", "csv"))


def test_symlinks_are_resolved_before_the_check(tmp_path):
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    with pytest.raises(InvalidConnection, match="not inside"):
        validate("files", "file", {"folder": str(link)}, {})
    inside = tmp_path / "landing"
    inside.mkdir()
    (inside / "passwd.csv").symlink_to("/etc/passwd")
    conn = Connection("t", "files", "file", {"folder": str(inside)}, {})
    assert validate("files", "file", {"folder": str(inside)}, {}) == {"folder": str(inside)}
    with pytest.raises(introspect.TableNotFound):
        introspect.sample_rows(conn, "passwd.csv", 1)


def test_file_roots_come_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("AIETL_FILE_ROOTS", str(tmp_path / "only"))
    (tmp_path / "only" / "in").mkdir(parents=True)
    validate("files", "file", {"folder": str(tmp_path / "only" / "in")}, {})
    with pytest.raises(InvalidConnection):
        validate("files", "file", {"folder": tempfile.gettempdir()}, {})
    monkeypatch.setenv("AIETL_FILE_ROOTS", "/")  # a root of / is ignored, not the whole host
    with pytest.raises(InvalidConnection):
        validate("files", "file", {"folder": "/etc"}, {})


# ---------------------------------------------------------------- the platform's broker


def test_a_kafka_connection_to_the_platform_broker_sees_only_shared_topics(monkeypatch):
    from services.connectors.kafka_topics import platform_broker, topic_allowed
    from services.core.settings import load_settings

    settings = load_settings()
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    for bootstrap in (settings.kafka_bootstrap, f"localhost:{port}", f"127.0.0.2:{port}"):
        assert platform_broker(bootstrap, settings), bootstrap
    assert not platform_broker("127.0.0.1:1", settings)
    conn = Connection("t", "bus", "kafka", {"bootstrap": f"localhost:{port}"}, {})
    commands = settings.topic("pipelines.commands.v1")
    assert not topic_allowed(conn, "shop.orders", settings) and not topic_allowed(conn, commands, settings)
    monkeypatch.setenv("AIETL_KAFKA_SHARED_TOPICS", "shop.*," + commands)
    shared = load_settings()
    assert topic_allowed(conn, "shop.orders", shared) and not topic_allowed(conn, "billing", shared)
    assert not topic_allowed(conn, commands, shared)  # the platform's own topics are never shared
    elsewhere = Connection("t", "bus", "kafka", {"bootstrap": "127.0.0.1:1"}, {})
    assert topic_allowed(elsewhere, "billing", settings)


# ---------------------------------------------------------------- secrets by shape

SECRET_PARAMS = [
    {"pwd": "hunter2"}, {"auth": {"password": "hunter2"}}, {"options": [{"db_password": "x"}]},
    {"dsn": "postgresql://etl:hunter2@db.internal/shop"}, {"base_url": "https://bob:hunter2@api.example.com"},
    {"extra_headers": {"X": "Bearer abcdefghijklmnop"}}, {"note": "token abcdefghijklmnop"},
    {"base_url": "https://api.example.com/v1?api_key=abc123"}, {"client_secret": "s"}, {"accessKey": "AKIAABCDEFGHIJKLMNOP"},
    {"jwt": "x"}, {"blob": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc"}, {"credentials": {"u": "v"}},
    {"pem": "-----BEGIN RSA PRIVATE KEY-----\nabc"}, {"openai": "sk-proj-abcdefghijklmnopqrstuv"},
]


@pytest.mark.parametrize("extra", SECRET_PARAMS, ids=lambda p: next(iter(p)))
def test_secret_like_params_are_refused_without_echoing_them(extra):
    params = {"base_url": "https://api.example.com", **extra}
    with pytest.raises(InvalidConnection) as err:
        validate("api", "http", params, {})
    assert "in secrets" in str(err.value)
    for word in ("hunter2", "abcdefghijklmnop", "AKIAABCDEFGHIJKLMNOP", "abc123", "sk-proj"):
        assert word not in str(err.value)


def test_ordinary_params_are_kept():
    params = {"base_url": "https://api.example.com/v1", "api_key_header": "X-Api-Key", "records_path": "data",
              "endpoints": ["/orders"], "partition_key": "id", "primary_key": "id", "user": "etl",
              "sasl_username": "etl", "health_path": "/health", "token_url": "https://auth.example.com/token"}
    assert validate("api", "http", params, {}) == params


def test_a_listing_never_shows_secret_like_params_of_old_rows():
    shown = _public("old", "postgres", {"host": "h", "dsn": "postgresql://u:hunter2@h/db", "auth": {"pwd": "x"}},
                    ["password"], False, None)
    assert "hunter2" not in json.dumps(shown) and shown["params"]["auth"] == "***set***"
    assert shown["params"]["host"] == "h" and shown["secrets"] == {"password": "***set***"}

