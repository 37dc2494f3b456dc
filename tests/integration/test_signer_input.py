"""What the real signer does with awkward input: duplicates (also across a restart) are
recorded once; bad records land on the deadletter topic with their reason, original bytes,
key and source position, and the signer keeps sequencing what follows."""
from __future__ import annotations

import os
from typing import Any

import pytest

from ledgerstream.core import mldsa, records
from ledgerstream.core.wire import codec
from support.actions import make_action
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import TopicTail, action_items, check_ledger, produce, wait_until

pytestmark = pytest.mark.integration


def _entries(tail: TopicTail) -> list[dict[str, Any]]:
    return [rec for _, rec in tail.decoded("LedgerEntry")]


def test_duplicates_are_recorded_once_even_after_a_restart(bootstrap, topics, start_signer,
                                                           signer_key_path) -> None:
    pub = mldsa.load_private_key(signer_key_path).public_key()
    actions = [make_action(agent_id=f"agent-{i % 4}", payload={"i": i}) for i in range(150)]
    items = action_items(actions)
    # producer retries: every record twice, the copy right behind the original (same key)
    produce(bootstrap, topics.actions, [item for item in items for _ in range(2)])
    first = start_signer("--batch-size", "64")
    tail = TopicTail(bootstrap, topics.entries)
    wait_until(lambda: tail.poll() >= 150, 60, "150 entries", on_timeout=first.log)
    wait_until(lambda: first.status().get("duplicates") == 150, 10, "150 duplicates counted",
               on_timeout=lambda: str(first.status()))
    first.kill9()

    # offline re-sync after the signer restarted: the same records once more
    second = start_signer("--batch-size", "64")
    second.wait_role("leader")
    produce(bootstrap, topics.actions, items)
    wait_until(lambda: second.status().get("duplicates") == 150, 60, "150 re-sent duplicates",
               on_timeout=lambda: f"{second.status()}\n{second.log()}")
    tail.poll(0.5)
    entries = _entries(tail)
    assert len(entries) == 150
    check_ledger(entries, pub)
    assert [e["action"]["event_id"] for e in entries] != [] and \
        {e["action"]["event_id"] for e in entries} == {a["event_id"] for a in actions}
    dl = TopicTail(bootstrap, topics.deadletter)
    assert dl.poll(0.5) == 0
    assert second.status()["entries"] == 0 and second.status()["next_seq"] == 150


def _unknown_fingerprint() -> bytes:
    return codec.MAGIC + os.urandom(8) + codec.encode("ActionEvent", make_action())[codec.HEADER_LEN:]


def test_bad_input_goes_to_the_deadletter_topic_and_the_signer_keeps_going(bootstrap, topics, start_signer,
                                                                           signer_key_path) -> None:
    pub = mldsa.load_private_key(signer_key_path).public_key()
    limit = 4096
    original = make_action(agent_id="agent-x", event_id="evt-conflict")
    bad_hash = make_action(agent_id="agent-y")
    bad_hash["payload_hash"] = records.sha256(b"not the payload")
    bad: list[tuple[str, bytes | None, bytes | None]] = [  # (reason, key, value)
        ("undecodable", b"agent-y", b"definitely not avro"),
        ("undecodable", b"agent-y", None),  # a tombstone
        ("unknown_schema", b"agent-z", _unknown_fingerprint()),
        ("oversized", b"agent-z", codec.encode("ActionEvent", make_action(payload={"blob": "x" * 2 * limit}))),
        ("invalid_field", b"agent-y", codec.encode("ActionEvent", make_action(action_type="bad type!"))),
        ("invalid_field", b"agent-z", codec.encode("ActionEvent", bad_hash)),
        ("invalid_field", b"agent-y", codec.encode("ActionEvent", dict(make_action(), payload_salt=None))),
        # valid Avro, but no JSON number can hold it: once poisoned the signer (crash loop)
        ("invalid_field", b"agent-z", codec.encode("ActionEvent", dict(make_action(), occurred_at=2**60))),
        ("duplicate_conflict", b"agent-x",
         codec.encode("ActionEvent", make_action(agent_id="agent-x", event_id="evt-conflict", payload={"x": 2}))),
    ]
    good = [make_action(agent_id=f"agent-{'xyz'[i % 3]}", payload={"i": i}) for i in range(30)]
    items: list[tuple[str | None, bytes | None, bytes | None]] = [(None, *action_items([original])[0])]
    for i, g in enumerate(good):  # bad records interleaved with good ones on every partition
        items.append((None, *action_items([g])[0]))
        if i < len(bad):
            items.append(bad[i])
    signer = start_signer("--max-record-bytes", str(limit))
    where = produce(bootstrap, topics.actions, [(k, v) for _, k, v in items])

    tail, dl = TopicTail(bootstrap, topics.entries), TopicTail(bootstrap, topics.deadletter)
    wait_until(lambda: tail.poll() >= 31 and dl.poll() >= len(bad), 60, "entries and dead letters",
               on_timeout=signer.log)
    check_ledger(_entries(tail), pub)
    assert {e["action"]["event_id"] for e in _entries(tail)} == {a["event_id"] for a in [original, *good]}

    expected = {pos: (reason, key, value) for pos, (reason, key, value) in zip(where, items) if reason}
    letters = [rec for _, rec in dl.decoded("DeadLetter")]
    assert len(letters) == len(bad)
    for letter in letters:
        pos = (letter["source"]["partition"], letter["source"]["offset"])
        assert letter["source"]["topic"] == topics.actions
        reason, key, value = expected.pop(pos)
        assert letter["reason"] == reason, letter["detail"]
        assert letter["original"] == (value or b"") and letter["original_key"] == key
        assert letter["detail"]
    assert not expected

    # still running, and still sequencing
    more = [make_action(agent_id="agent-after", payload={"n": n}) for n in range(5)]
    produce(bootstrap, topics.actions, action_items(more))
    wait_until(lambda: tail.poll() >= 36, 30, "entries after the bad input", on_timeout=signer.log)
    check_ledger(_entries(tail), pub)
    assert signer.proc.poll() is None and signer.status()["role"] == "leader"
    assert signer.status()["dead_letters"] == len(bad)


POISON_SIZE = 8_388_520   # the record that once stopped the ledger (issue 20): its whole-copy
                          # dead letter exceeded the broker's 8 MiB limit and every transaction aborted


def test_an_oversized_record_is_refused_by_the_actions_topic(bootstrap, topics) -> None:
    """The actions topic's limit matches the signer's --max-record-bytes default (1 MiB):
    the broker itself refuses the poison record, with a size error for its producer."""
    with pytest.raises(AssertionError, match="MSG_SIZE_TOO_LARGE|too large"):
        produce(bootstrap, topics.actions, [(b"agent-big", os.urandom(POISON_SIZE))], timeout=30)


def test_an_8mb_record_on_an_older_actions_topic_is_dead_lettered_and_the_ledger_goes_on(
        bootstrap, topics, start_signer, signer_key_path) -> None:
    """On a topic created before that limit (8 MiB, the broker's), the record reaches the
    signer: it becomes a bounded dead letter (first 64 KiB, length, SHA-256) in the same
    transaction, and the actions after it are sequenced."""
    import hashlib

    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", str(8 * 1024 * 1024),
                        incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topics.actions, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    pub = mldsa.load_private_key(signer_key_path).public_key()
    poison = os.urandom(POISON_SIZE)
    before = [make_action(agent_id="agent-p", payload={"i": i}) for i in range(3)]
    after = [make_action(agent_id="agent-p", payload={"i": i}) for i in range(3, 6)]
    items = action_items(before) + [(b"agent-p", poison)] + action_items(after)
    wait_until(lambda: _accepts(bootstrap, topics.actions, items), 30, "the topic to take an 8 MB record")
    signer = start_signer()

    tail, dl = TopicTail(bootstrap, topics.entries), TopicTail(bootstrap, topics.deadletter)
    wait_until(lambda: tail.poll() >= 6 and dl.poll() >= 1, 90, "6 entries and the dead letter",
               on_timeout=lambda: f"{signer.status()}\n{signer.log()}")
    check_ledger(_entries(tail), pub)
    assert [e["action"]["event_id"] for e in _entries(tail)] == [a["event_id"] for a in before + after]
    [letter] = [rec for _, rec in dl.decoded("DeadLetter")]
    assert letter["reason"] == "oversized"
    assert letter["original"] == poison[:65536] and letter["original_size"] == POISON_SIZE
    assert letter["original_sha256"] == hashlib.sha256(poison).digest()
    # the status file is written every few seconds: it catches up with what the topics show
    wait_until(lambda: signer.status().get("next_seq") == 6 and signer.status().get("dead_letters") == 1, 30,
               "the signer's status to show 6 entries and 1 dead letter", on_timeout=lambda: str(signer.status()))


def _accepts(bootstrap: str, topic: str, items: list) -> bool:
    """Produce ``items`` once the altered topic config is in force (it spreads asynchronously)."""
    try:
        produce(bootstrap, topic, items, timeout=20)
    except AssertionError:
        return False
    return True
