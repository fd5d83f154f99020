"""Apache Kafka 4.x, one node in KRaft mode (broker + controller), run from plain jars.

Jars come from ``settings.kafka_home/libs`` when set, else from Maven (``infra/kafka/pom.xml`` copied into
``<state_dir>/kafka/libs`` once, re-resolved when the pom changes). With ``settings.kafka_external`` nothing
is started: the configured bootstrap servers are only health-checked.

Layout under ``<state_dir>/kafka/``: ``libs/`` (jars + ``.pom.sha256`` marker), ``server.properties``,
``log4j2.xml``, ``data/`` (log.dirs, formatted once), ``logs/`` (``server.log`` from log4j2, ``kafka.out``
for the JVM's stdout/stderr), ``kafka.pid``.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

from .base import Component
from .procs import StackError, owned_pid, run, spawn_detached, stop_pid

# Written after a format that added the SCRAM users: an older data dir lacks it.
SASL_MARKER = "aietl-sasl"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by aietl infra: the broker logs to ${sys:kafka.logs.dir}. -->
<Configuration status="warn">
  <Appenders>
    <RollingFile name="server" fileName="${sys:kafka.logs.dir}/server.log"
                 filePattern="${sys:kafka.logs.dir}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="5"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="kafka.network.RequestChannel$" level="warn"/>
    <Logger name="org.apache.kafka.controller" level="info"/>
    <Logger name="kafka.log.LogCleaner" level="info"/>
    <Logger name="state.change.logger" level="warn"/>
    <Logger name="kafka.authorizer.logger" level="warn"/>
  </Loggers>
</Configuration>
"""


def _split_hostport(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port or 9092)


def java_bin(apt=None) -> str:
    """JAVA_HOME/bin/java, else java on PATH, else (with ``apt``) the Debian JRE 17 is installed."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found and apt is not None:
        apt.install(["openjdk-17-jre-headless"], "Java for Kafka")
        found = shutil.which("java")
    if not found:
        raise StackError("java not found: install a JDK 17+ (e.g. apt-get install openjdk-17-jre-headless) "
                         "or set JAVA_HOME")
    return found


class Kafka(Component):
    name = "kafka"
    start_timeout = 90.0

    @property
    def host(self) -> str:
        return _split_hostport(self.settings.kafka_bootstrap)[0]

    @property
    def port(self) -> int:
        return _split_hostport(self.settings.kafka_bootstrap)[1]

    @property
    def address(self) -> str:
        return self.settings.kafka_bootstrap

    def external(self) -> bool:
        return bool(self.settings.kafka_external)

    @property
    def pidfile(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def props(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "server.log"

    @property
    def out_file(self) -> Path:
        return self.dir / "logs" / "kafka.out"

    @property
    def error_logs(self) -> list[Path]:
        return [self.out_file, self.log_file]

    def running_pid(self) -> Optional[int]:
        return owned_pid(self.pidfile, ["java"], self.dir, needle="kafka.Kafka")

    def listening(self) -> bool:
        from .procs import port_open
        return any(port_open(*_split_hostport(b)) for b in self.settings.kafka_bootstrap.split(","))

    def check(self) -> tuple[bool, str]:
        from confluent_kafka.admin import AdminClient

        from services.core.kafka_auth import ADMIN, BusCredentialsError, client_conf
        try:
            conf = client_conf(self.settings, ADMIN)
        except BusCredentialsError as e:
            if self.running_pid() is not None:  # a broker of ours from before the bus was closed
                return False, (f"{e}; the broker running from {self.dir} was started before Kafka required "
                               "SASL: run `aietl down`, then `aietl up` (it says what to do with the old data)")
            return False, str(e)
        quiet = logging.getLogger("infra.kafka.librdkafka")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        admin = AdminClient({**conf, "socket.timeout.ms": 5000, "logger": quiet})
        try:
            md = admin.list_topics(timeout=5)
        except Exception as e:  # KafkaException
            return False, f"metadata request failed: {e}"
        return True, f"{len(md.brokers)} broker(s), {len(md.topics)} topic(s)"

    # -- start -----------------------------------------------------------------------------------
    def classpath(self) -> str:
        if self.settings.kafka_home:
            libs = Path(self.settings.kafka_home).expanduser().resolve() / "libs"
            if not any(libs.glob("*.jar")):
                raise StackError(f"KAFKA_HOME={self.settings.kafka_home}: no jars in {libs}")
            return f"{libs}/*"
        libs = self.dir / "libs"
        marker = libs / ".pom.sha256"
        want = hashlib.sha256(POM.read_bytes()).hexdigest()
        have = marker.read_text().strip() if marker.exists() else ""
        if have != want or not any(libs.glob("kafka_2.13-*.jar")):
            mvn = shutil.which("mvn")
            if not mvn:
                self.apt.install(["maven"], "to resolve the Kafka jars")
                mvn = shutil.which("mvn") or "mvn"
            self.log(f"resolving Kafka jars with Maven into {libs}")
            if libs.exists():
                shutil.rmtree(libs)
            libs.mkdir(parents=True)
            run([mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                 f"-DoutputDirectory={libs}", "-DincludeScope=runtime"], timeout=900)
            if not any(libs.glob("kafka_2.13-*.jar")):
                raise StackError(f"Maven ran but no kafka_2.13 jar landed in {libs}")
            marker.write_text(want + "\n")
        return f"{libs}/*"

    def write_config(self) -> None:
        from services.core.kafka_auth import ADMIN, BROKER, CONTROLLER, ensure_secret, password

        host, port = self.host, self.port
        cport = int(self.settings.kafka_controller_port)
        data = self.dir / "data"
        ensure_secret(self.settings)
        broker_pw, controller_pw = password(self.settings, BROKER), password(self.settings, CONTROLLER)
        # Clients: SCRAM-SHA-512 on CLIENT (users in the cluster metadata: admin and broker at format,
        # processors by topology apply). The controller listener: PLAIN with one JAAS user, since KRaft
        # controllers cannot read SCRAM credentials from the metadata they serve; loopback only.
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"CLIENT://{host}:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"CLIENT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "CLIENT",
            "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.client.scram-sha-512.sasl.jaas.config":
                f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{BROKER}" '
                f'password="{broker_pw}";',
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config":
                f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{CONTROLLER}" '
                f'password="{controller_pw}" user_{CONTROLLER}="{controller_pw}";',
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};User:{BROKER};User:{CONTROLLER}",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
        }
        self.props.write_text("# written by aietl infra (infra/kafka_broker.py); rewritten on every start\n"
                              + "".join(f"{k}={v}\n" for k, v in props.items()))
        self.props.chmod(0o600)  # it holds the broker's and controller's passwords
        (self.dir / "log4j2.xml").write_text(LOG4J2_XML)

    def check_state(self, data: Path) -> None:
        """A data dir formatted before the bus had credentials has no SCRAM users: say what to do."""
        if (data / "meta.properties").exists() and not (data / SASL_MARKER).exists():
            raise StackError(
                f"{data} was formatted before Kafka required SASL/SCRAM (it has no admin user). Its topics "
                f"hold only this machine's drafts and runs; to start over with credentials, run "
                f"`aietl down`, remove {data} (rm -rf {data}) and `aietl up` again. Or keep the old broker "
                f"by checking out an older aietl.")

    def start(self) -> None:
        from services.core.kafka_auth import ADMIN, BROKER, password

        from .procs import port_open
        cport = int(self.settings.kafka_controller_port)
        if port_open("127.0.0.1", cport):
            raise StackError(f"cannot start Kafka on {self.address}: the controller port 127.0.0.1:{cport} is "
                             "already taken by another process (set AIETL_KAFKA_CONTROLLER_PORT)")
        java = java_bin(self.apt)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        cp = self.classpath()
        self.write_config()
        data = self.dir / "data"
        self.check_state(data)
        if not (data / "meta.properties").exists():
            # One id in 64 starts with '-': as a separate argument argparse would read it as an option.
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self.log(f"formatting Kafka storage in {data} (cluster id {cluster_id})")
            run([java, "-cp", cp, f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}",
                 f"-Dkafka.logs.dir={self.dir / 'logs'}", "kafka.tools.StorageTool", "format",
                 f"--cluster-id={cluster_id}", "-c", str(self.props)]
                + [f"--add-scram=SCRAM-SHA-512=[name={u},password={password(self.settings, u)}]"
                   for u in (ADMIN, BROKER)], timeout=120)
            (data / SASL_MARKER).write_text("SCRAM-SHA-512 users admin, broker formatted in\n")
        argv = [java, f"-Xmx{self.settings.kafka_heap}", "-Xms128m", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={self.dir / 'logs'}",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}",
                "-cp", cp, "kafka.Kafka", str(self.props)]
        self.log(f"starting Kafka on {self.address} (logs: {self.dir / 'logs'})")
        self.proc = spawn_detached(argv, self.out_file, self.pidfile, cwd=self.dir)

    def stop(self, pid: int) -> bool:
        ok = stop_pid(pid, timeout=60)
        if ok:
            self.pidfile.unlink(missing_ok=True)
        return ok
