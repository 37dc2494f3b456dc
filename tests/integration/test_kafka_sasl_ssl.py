"""SASL_SSL as docker-compose.yml runs it: the generated CA, broker key store, broker
settings, users and ACLs (``ledgerstream.stack.compose_secrets``) on a real Kafka JVM.
Docker does not run here, so the broker is the embedded one with the same files."""
from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ledgerstream.core.config import Topics
from ledgerstream.core.kafka_security import read_properties
from ledgerstream.stack.compose_secrets import generate
from ledgerstream.stack.kafka import KafkaBroker
from ledgerstream.stack.security import BrokerSecurity, ensure_acls
from ledgerstream.stack.tls import TlsFiles


def deliver(config: dict, topic: str) -> KafkaError | None:
    outcome: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 8000, "log_level": 0})
    producer.produce(topic, b"x", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(20)
    assert outcome
    return outcome[0]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("secrets")
    generate(out, broker_hosts=["localhost", "127.0.0.1"], ca_location=str(out / "kafka" / "ca.pem"))
    security = BrokerSecurity.load_or_create(out / "kafka" / "sasl.json",
                                             TlsFiles(out / "kafka" / "ca.pem", out / "kafka" / "broker-keystore.pem"))
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-ssl"), host="localhost", security=security)
    broker.start()
    try:
        topics = Topics.with_prefix("ledgerstream.")
        admin = {"bootstrap.servers": broker.bootstrap, **read_properties(out / "admin" / "admin.properties")}
        ensure_acls(admin, topics)
        yield broker, out, topics, admin
    finally:
        broker.stop()


def role_config(secured, role: str) -> dict:
    broker, out, _, _ = secured
    return {"bootstrap.servers": broker.bootstrap, **read_properties(out / role / f"{role}.properties")}


def test_generated_files_are_private_and_per_role(secured) -> None:
    _, out, _, _ = secured
    for role in ("producer", "signer", "verifier", "reader", "admin"):
        props = read_properties(out / role / f"{role}.properties")
        assert props["security.protocol"] == "SASL_SSL" and props["sasl.username"] == role
        assert (out / role / f"{role}.properties").stat().st_mode & 0o077 == 0
        assert not any(p.name.endswith(".properties") and p.parent.name != role for p in (out / role).iterdir())


def test_roles_authenticate_over_tls_with_least_privilege(secured) -> None:
    _, _, topics, admin = secured
    client = AdminClient(admin)
    for future in client.create_topics([NewTopic(t, 1, 1) for t in topics.as_dict().values()]).values():
        future.result(30)
    assert deliver(role_config(secured, "producer"), topics.actions) is None
    assert deliver(role_config(secured, "signer"), topics.entries) is None
    err = deliver(role_config(secured, "producer"), topics.entries)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_client_that_does_not_trust_the_ca_is_refused(secured) -> None:
    config = role_config(secured, "producer")
    config.pop("ssl.ca.location")  # the system's CAs do not know the generated one
    with pytest.raises(KafkaException):
        AdminClient({**config, "log_level": 0}).list_topics(timeout=5)


def test_plaintext_and_anonymous_clients_are_refused(secured) -> None:
    broker = secured[0]
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0}).list_topics(timeout=5)
