"""The embedded broker is real Kafka: it answers clients, keeps data across restarts,
needs no network once cached, and explains what is missing when Java/Maven are not there."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from ledgerstream.core.errors import ConfigError
from ledgerstream.stack import kafka as kafka_mod
from ledgerstream.stack.kafka import KafkaBroker, ensure_jars, jars_dir, pid_alive

pytestmark = pytest.mark.integration


def test_fixture_broker_is_a_real_kafka_jvm(kafka_broker: KafkaBroker) -> None:
    cmdline = Path(f"/proc/{kafka_broker.pid}/cmdline").read_bytes().split(b"\0")
    assert b"kafka.Kafka" in cmdline
    md = AdminClient({"bootstrap.servers": kafka_broker.bootstrap}).list_topics(timeout=10)
    assert len(md.brokers) == 1


def test_topics_have_the_design_layout(bootstrap: str, topics) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    assert len(md.topics[topics.entries].partitions) == 1
    assert len(md.topics[topics.checkpoints].partitions) == 1
    assert len(md.topics[topics.actions].partitions) > 1
    res = ConfigResource(ConfigResource.Type.TOPIC, topics.entries)
    config = admin.describe_configs([res])[res].result(10)
    assert config["retention.ms"].value == "-1"
    assert config["retention.bytes"].value == "-1"
    assert config["cleanup.policy"].value == "delete"


def test_restart_keeps_data_and_address(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "k")
    broker.start()
    try:
        first_bootstrap = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        from confluent_kafka.admin import NewTopic

        admin.create_topics([NewTopic("keep", 1, 1)])["keep"].result(30)
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(5):
            p.produce("keep", b"m%d" % i)
        assert p.flush(30) == 0
        broker.stop()
        broker = KafkaBroker(tmp_path / "k")
        broker.start()
        assert broker.bootstrap == first_bootstrap
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
        c.assign([TopicPartition("keep", 0, 0)])
        got = []
        while len(got) < 5:
            m = c.poll(10)
            assert m is not None, "records lost across restart"
            got.append(m.value())
        c.close()
        assert got == [b"m%d" % i for i in range(5)]
    finally:
        pid = broker.pid
        broker.stop()
        assert not pid_alive(pid)


def test_second_start_needs_no_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_jars()
    assert (jars_dir() / ".complete").exists()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    import shutil

    (bin_dir / "java").symlink_to(shutil.which("java"))
    monkeypatch.setenv("PATH", str(bin_dir))  # no mvn on PATH: the cache must suffice
    broker = KafkaBroker(tmp_path / "k")
    broker.start()
    broker.stop()


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="install Java 17"):
        kafka_mod.java_binary()


def test_missing_maven_without_cache_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEDGERSTREAM_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="Maven"):
        ensure_jars()


def test_port_in_use_is_a_clear_error(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    other = KafkaBroker(tmp_path / "k2")
    other.ports = kafka_broker.ports
    with pytest.raises(ConfigError, match="in use"):
        other.start()
