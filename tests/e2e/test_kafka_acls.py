"""The dev stack's backbone: SASL/SCRAM on every client connection and least-privilege ACLs
(issue 19, item 1). Every refusal here comes from the real broker's authorizer."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import stack_kafka_config

ROLES = {"producer", "signer", "verifier", "reader", "admin"}


def produce_one(config: dict, topic: str, value: bytes = b"rogue") -> KafkaError | None:
    """Produce one record; the delivery error (None when the broker accepted it)."""
    outcome: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 8000, "log_level": 0})
    producer.produce(topic, value, on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(20)
    assert outcome, "no delivery report within 20 s"
    return outcome[0]


def end_offset(state: dict, topic: str) -> int:
    consumer = Consumer(stack_kafka_config(state, **{"group.id": f"acl-test-{uuid.uuid4().hex}"}))
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    finally:
        consumer.close()


def signer_pid(state: dict) -> int | None:
    out = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", "dev", "status", "--json"],
                         env=state["env"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["signer"]["pid"]


def test_status_reports_sasl_and_a_client_config_per_role(dev_stack: dict) -> None:
    security = dev_stack["kafka"]["security"]
    assert security["protocol"] == "SASL_PLAINTEXT"
    assert security["mechanism"] == "SCRAM-SHA-512"
    assert set(security["client_configs"]) >= ROLES
    for role, path in security["client_configs"].items():
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600, f"{role}: {oct(mode)}"
        assert f"sasl.username={role}\n" in Path(path).read_text()


def test_anonymous_clients_are_refused(dev_stack: dict) -> None:
    topics = dev_stack["topics"]
    before = end_offset(dev_stack, topics["entries"])
    anonymous = {"bootstrap.servers": dev_stack["kafka"]["bootstrap"]}
    err = produce_one(anonymous, topics["entries"])
    assert err is not None  # the SASL listener drops a client that does not authenticate
    with pytest.raises(KafkaException):
        AdminClient({**anonymous, "log_level": 0}).list_topics(timeout=5)
    assert end_offset(dev_stack, topics["entries"]) == before


def test_a_wrong_password_is_refused(dev_stack: dict) -> None:
    config = stack_kafka_config(dev_stack, "admin")
    config["sasl.password"] = "not-" + config["sasl.password"]
    err = produce_one(config, dev_stack["topics"]["actions"])
    assert err is not None


@pytest.mark.parametrize("topic_role", ["entries", "checkpoints", "alerts", "deadletter"])
def test_the_producer_principal_cannot_write_the_ledger_or_alerts(dev_stack: dict, topic_role: str) -> None:
    topic = dev_stack["topics"][topic_role]
    before = end_offset(dev_stack, topic) if topic_role != "alerts" else None
    err = produce_one(stack_kafka_config(dev_stack, "producer"), topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    if before is not None:
        assert end_offset(dev_stack, topic) == before


def test_the_producer_principal_can_write_actions(dev_stack: dict) -> None:
    from tests.support.actions import encode_action

    err = produce_one(stack_kafka_config(dev_stack, "producer"), dev_stack["topics"]["actions"],
                      encode_action(agent_id="acl-positive-control"))
    assert err is None


def test_the_producer_principal_cannot_take_the_signers_transactional_id(dev_stack: dict) -> None:
    pid = signer_pid(dev_stack)
    assert pid is not None
    txn_id = f"{dev_stack['topics']['entries']}.signer"
    thief = Producer(stack_kafka_config(dev_stack, "producer", **{"transactional.id": txn_id, "log_level": 0}))
    with pytest.raises(KafkaException) as caught:
        thief.init_transactions(15)
    assert caught.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert signer_pid(dev_stack) == pid  # not fenced: the signer kept running


@pytest.mark.parametrize("role", ["verifier", "reader"])
def test_readers_and_verifiers_cannot_write_entries(dev_stack: dict, role: str) -> None:
    err = produce_one(stack_kafka_config(dev_stack, role), dev_stack["topics"]["entries"])
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_only_verifiers_write_alerts(dev_stack: dict) -> None:
    err = produce_one(stack_kafka_config(dev_stack, "reader"), dev_stack["topics"]["alerts"])
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    allowed = stack_kafka_config(dev_stack, "verifier")
    probe = Producer({**allowed, "log_level": 0})
    # metadata only: a real record here would be an (unsigned) alert on the shared stack
    assert dev_stack["topics"]["alerts"] in probe.list_topics(dev_stack["topics"]["alerts"], timeout=10).topics


def test_a_reader_cannot_join_the_signers_group(dev_stack: dict) -> None:
    group = f"{dev_stack['topics']['entries']}.signer"
    reader = Consumer(stack_kafka_config(dev_stack, "reader", **{"group.id": group, "log_level": 0}))
    try:
        reader.subscribe([dev_stack["topics"]["actions"]])
        errors = []
        for _ in range(20):
            msg = reader.poll(0.5)
            if msg is not None and msg.error() is not None:
                errors.append(msg.error().code())
                break
        assert KafkaError.GROUP_AUTHORIZATION_FAILED in errors
    finally:
        reader.close()
