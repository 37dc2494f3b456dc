"""The embedded Apache Kafka broker: real ``kafka.Kafka`` (KRaft, one node) on loopback.

The dev stack, the test fixtures and the benchmarks all start Kafka through this
module. Jars are resolved once from Maven Central with ``mvn`` into the cache folder;
later starts need no network.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import base64
from dataclasses import dataclass
from pathlib import Path

from ledgerstream.core.config import cache_dir
from ledgerstream.core.errors import ConfigError
from ledgerstream.stack.security import BrokerSecurity, ensure_users

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.ledgerstream</groupId><artifactId>embedded-kafka</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{SCALA_VERSION}</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{SLF4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ConfigError(f"'{tool}' not found on PATH: {hint}")
    return path


def java_binary() -> str:
    java = _require("java", "install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major and major < 17:
        raise ConfigError(f"Java {major} found, Kafka {KAFKA_VERSION} needs Java 17+ "
                          "(Debian: apt-get install openjdk-17-jre-headless)")
    return java


def jars_dir() -> Path:
    return cache_dir() / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}" / "lib"


def ensure_jars(*, quiet: bool = True) -> Path:
    """Resolve Kafka and its runtime dependencies into the cache (once); returns the folder."""
    lib = jars_dir()
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = _require("mvn", "install Apache Maven to fetch the Kafka jars (Debian: apt-get install maven)")
    java_binary()
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ledgerstream-mvn-") as tmp:
        Path(tmp, "pom.xml").write_text(_POM)
        staging = Path(tmp) / "lib"
        cmd = [mvn, "-B", "-q" if quiet else "-ntp", "dependency:copy-dependencies",
               f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(f"mvn could not fetch Kafka {KAFKA_VERSION} from Maven Central "
                              f"(exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
        if lib.exists():
            shutil.rmtree(lib)
        shutil.move(str(staging), str(lib))
    marker.write_text(KAFKA_VERSION)
    return lib


def _cluster_id() -> str:
    """A Kafka cluster id (URL-safe base64 UUID); like Kafka's own, never starting with
    '-', which the storage tool's argument parser would read as an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


#: written next to meta.properties when the storage was formatted with the admin's SCRAM credential
SECURED_MARKER = "ledgerstream-sasl"


@dataclass
class BrokerPorts:
    broker: int
    controller: int


def private_dir(path: Path) -> None:
    """Create ``path`` mode 0700 (chmod it if it exists): the log segments hold the plain payloads."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


class KafkaBroker:
    """One real Kafka 4.x node (broker + controller) with its data under ``data_dir``.

    Ports are remembered in ``data_dir/ports.json`` so that a restarted broker keeps
    its bootstrap address (clients and spools keep working across ``dev down``/``up``).
    """

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", heap: str = "512m",
                 security: BrokerSecurity | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.heap = heap
        self.security = security
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports = self._choose_ports()

    # --- files -------------------------------------------------------------------------
    def _choose_ports(self) -> BrokerPorts:
        path = self.data_dir / "ports.json"
        if path.exists():
            saved = json.loads(path.read_text())
            return BrokerPorts(saved["broker"], saved["controller"])
        return BrokerPorts(free_port(self.host), free_port(self.host))

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.ports.broker}"

    def admin_config(self, **settings: object) -> dict[str, object]:
        """A client configuration with the admin principal's credentials (none on an open broker)."""
        creds = self.security.client_properties("admin") if self.security else {}
        return {"bootstrap.servers": self.bootstrap, **creds, **settings}

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    def _write_config(self) -> Path:
        for folder in (self.data_dir, self.data_dir / "data", self.data_dir / "logs"):
            private_dir(folder)
        (self.data_dir / "ports.json").write_text(json.dumps({"broker": self.ports.broker,
                                                              "controller": self.ports.controller}))
        listener = self.security.protocol if self.security else "PLAINTEXT"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.ports.controller}",
            "listeners": f"{listener}://{self.host}:{self.ports.broker},CONTROLLER://{self.host}:{self.ports.controller}",
            "advertised.listeners": f"{listener}://{self.host}:{self.ports.broker}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # the signer's --session-timeout-ms may go this low (Kafka's default floor is 6 s)
            "group.min.session.timeout.ms": "1000",
            "message.max.bytes": str(8 * 1024 * 1024),
            "replica.fetch.max.bytes": str(8 * 1024 * 1024),
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "5000",
            "log.flush.interval.messages": "9223372036854775807",
        }
        if self.security:
            props.update(self.security.broker_properties())
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        return path

    def _java(self, main: str, *args: str, capture: bool = True) -> list[str]:
        lib = ensure_jars()
        return [java_binary(), f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp", f"{lib}/*", main, *args]

    def format_storage(self) -> None:
        """Format KRaft storage once; a formatted folder is left as it is."""
        config = self._write_config()
        marker = self.data_dir / SECURED_MARKER
        if (self.data_dir / "data" / "meta.properties").exists():
            if self.security and not marker.exists():
                raise ConfigError(f"the Kafka data in {self.data_dir} was created without SASL credentials "
                                  "(before ledgerstream 0.2); start over with 'ledgerstream dev up --fresh'")
            return
        extra = self.security.format_arguments() if self.security else []
        proc = subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", _cluster_id(),
                                         "-c", str(config), *extra), capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(f"Kafka storage format failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
        private_dir(self.data_dir / "data")  # the format step may have recreated it with the umask's mode
        if self.security:
            marker.write_text("SCRAM-SHA-512 admin credential formatted\n")

    # --- life cycle ----------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        """Start the JVM and return once the broker answers metadata requests."""
        for port in (self.ports.broker, self.ports.controller):
            if not port_is_free(port, self.host):
                raise ConfigError(f"port {port} on {self.host} is in use; is another broker running "
                                  f"with data in {self.data_dir}? (stop it, or use a fresh folder)")
        self.format_storage()
        out = open(self.data_dir / "logs" / "stdout.log", "ab")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(self.data_dir / "server.properties")),
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        out.close()
        self.wait_ready(timeout)
        if self.security:
            ensure_users(self.admin_config(), self.security)

    def wait_ready(self, timeout: float = 90.0) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        admin = AdminClient(self.admin_config(log_level=0, logger=_SilentLogger()))
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ConfigError(f"Kafka exited with status {self.proc.returncode} during start; "
                                  f"see {self.data_dir / 'logs'}:\n{self._tail()}")
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return
            except Exception as exc:  # not up yet
                last = str(exc)
            time.sleep(0.3)
        raise ConfigError(f"Kafka did not answer on {self.bootstrap} within {timeout:.0f}s ({last})")

    def _tail(self, n: int = 30) -> str:
        path = self.data_dir / "logs" / "stdout.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), then SIGKILL if it does not exit in time."""
        if self.proc is None:
            return
        stop_pid(self.proc.pid, timeout, proc=self.proc)
        self.proc = None

    def kill(self) -> None:
        """kill -9: for fault-injection tests."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> "KafkaBroker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _SilentLogger:
    """Swallows librdkafka's connection-refused chatter while waiting for the broker."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None

    def __getattr__(self, name: str):  # info/warning/... used by confluent-kafka
        return self.log


def stop_pid(pid: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM a process (group), wait, then SIGKILL; quiet if it is already gone."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if proc is not None:
        proc.wait()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
