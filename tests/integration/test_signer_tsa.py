"""RFC 3161 anchoring with the real signer and the DEV-ONLY TSA (openssl ts behind HTTP):
a TSA outage never stops signing or checkpointing, the backlog is visible and survives a
crash, and once a TSA answers on the same address every checkpoint gets a token that
verifies offline; per-entry mode stamps each entry hash."""
from __future__ import annotations

import pytest

from ledgerstream.core import mldsa, records
from ledgerstream.core.errors import TimestampError
from ledgerstream.core.timestamp import verify_timestamp
from ledgerstream.stack.devtsa import DevTSA
from ledgerstream.stack.kafka import free_port
from support.actions import make_action
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import (TopicTail, action_items, check_checkpoints, check_ledger, produce,
                                 split_checkpoints, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tsa_down_then_back_on_the_same_port(bootstrap, topics, start_signer, signer_key_path, tmp_path) -> None:
    pub = mldsa.load_private_key(signer_key_path).public_key()
    tsa_dir = tmp_path / "tsa"
    tsa = DevTSA(tsa_dir, port=free_port()).start()  # creates the DEV-ONLY CA, then goes away
    url, port, ca_pem = tsa.url, tsa.port, tsa.ca_cert.read_bytes()
    tsa.stop()

    signer = start_signer("--checkpoint-every", "40", tsa_url=url)
    actions = [make_action(agent_id=f"agent-{i % 3}", payload={"i": i}) for i in range(200)]
    produce(bootstrap, topics.actions, action_items(actions[:120]))
    tail, cp_tail = TopicTail(bootstrap, topics.entries), TopicTail(bootstrap, topics.checkpoints)
    wait_until(lambda: tail.poll() >= 120, 60, "entries while the TSA is down", on_timeout=signer.log)
    wait_until(lambda: signer.status().get("tsa_backlog", 0) >= 3 and signer.status().get("tsa_failures", 0) > 0,
               30, "a TSA backlog in status", on_timeout=lambda: str(signer.status()))
    cp_tail.poll(0.5)
    cps, anchors = split_checkpoints(cp_tail.decoded())
    assert len(cps) >= 3 and not anchors, "checkpoints are published while no TSA answers"

    # a crash while the backlog is pending: the restarted signer finds it again from the topic
    signer.kill9()
    signer = start_signer("--checkpoint-every", "40", tsa_url=url)
    signer.wait_role("leader")
    produce(bootstrap, topics.actions, action_items(actions[120:]))
    wait_until(lambda: tail.poll() >= 200, 60, "entries after the restart", on_timeout=signer.log)
    wait_until(lambda: signer.status().get("unanchored_checkpoints", 0) >= 5, 30, "the recovered backlog",
               on_timeout=lambda: str(signer.status()))

    back = DevTSA(tsa_dir, port=port).start()
    try:
        def all_anchored() -> bool:
            cp_tail.poll()
            cps, anchors = split_checkpoints(cp_tail.decoded())
            anchored = {bytes(a["body_hash"]) for a in anchors}
            return bool(cps) and cps[-1]["tree_size"] == 200 and \
                all(records.sha256(bytes(c["body"])) in anchored for c in cps)
        wait_until(all_anchored, 90, "a TimestampAnchor for every checkpoint",
                   on_timeout=lambda: f"{signer.status()}\n{signer.log()}")
    finally:
        back.stop()
    cps, anchors = split_checkpoints(cp_tail.decoded())
    entries = [rec for _, rec in tail.decoded("LedgerEntry")]
    check_ledger(entries, pub)
    check_checkpoints(entries, cps, pub)
    bodies = {records.sha256(bytes(c["body"])): c for c in cps}
    for anchor in anchors:
        cp = bodies[bytes(anchor["body_hash"])]
        assert anchor["tree_size"] == cp["tree_size"] and anchor["timestamp"]["tsa"] == url
        info = verify_timestamp(bytes(anchor["timestamp"]["token"]), bytes(cp["body"]), ca_pem)
        assert info.gen_time.timestamp() * 1e6 >= cp["created_at"] - 2e6
        with pytest.raises(TimestampError):  # it covers that body and no other
            verify_timestamp(bytes(anchor["timestamp"]["token"]), bytes(cp["body"]) + b"x", ca_pem)
    wait_until(lambda: signer.status().get("tsa_backlog") == 0 and signer.status().get("unanchored_checkpoints") == 0,
               15, "an empty backlog", on_timeout=lambda: str(signer.status()))


@pytest.mark.parametrize("signing_mode", ["entry", "checkpoint"])  # checkpoint mode: not the sealed path (D54)
def test_per_entry_timestamp_mode(bootstrap, topics, start_signer, signer_key_path, dev_tsa, signing_mode) -> None:
    pub = mldsa.load_private_key(signer_key_path).public_key()
    ca_pem = dev_tsa.ca_cert.read_bytes()
    signer = start_signer("--timestamp-mode", "entry", "--signing-mode", signing_mode, tsa_url=dev_tsa.url)
    produce(bootstrap, topics.actions, action_items([make_action(agent_id=f"a{i % 2}", payload={"i": i})
                                                     for i in range(12)]))
    tail = TopicTail(bootstrap, topics.entries)
    wait_until(lambda: tail.poll() >= 12, 60, "12 stamped entries", on_timeout=signer.log)
    entries = [rec for _, rec in tail.decoded("LedgerEntry")]
    check_ledger(entries, pub, signed=signing_mode == "entry")
    for e in entries:
        token, h = e["timestamp_token"], bytes(e["entry_hash"])
        assert token is not None, f"entry {e['seq']} has no token"
        verify_timestamp(bytes(token), h, ca_pem)
        assert records.entry_hash(e) == h  # the token is beside the hash, not inside it
    with pytest.raises(TimestampError):
        verify_timestamp(bytes(entries[0]["timestamp_token"]), bytes(entries[1]["entry_hash"]), ca_pem)
    # checkpoints are anchored as well
    cp_tail = TopicTail(bootstrap, topics.checkpoints)
    wait_until(lambda: cp_tail.poll() and any(n == "TimestampAnchor" for n, _ in cp_tail.decoded()), 30,
               "a checkpoint anchor")
    cps, anchors = split_checkpoints(cp_tail.decoded())
    body = {records.sha256(bytes(c["body"])): bytes(c["body"]) for c in cps}
    verify_timestamp(bytes(anchors[0]["timestamp"]["token"]), body[bytes(anchors[0]["body_hash"])], ca_pem)
