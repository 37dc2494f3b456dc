"""Exactly-once under kill -9: the real signer subprocess is killed at random points while
actions stream in, and restarted; the committed ledger must hold every action exactly
once, in one gapless, intact, correctly signed chain, with checkpoints that match it."""
from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from ledgerstream.core import mldsa
from support.actions import make_action
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import (TopicTail, action_items, check_checkpoints, check_ledger, produce,
                                 split_checkpoints, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _workload(total: int, rng: random.Random) -> list[dict[str, Any]]:
    """Actions of 7 interleaved agents; about one in five links to an earlier action of
    another agent (resolved or pending depending on what is sequenced first)."""
    actions: list[dict[str, Any]] = []
    for i in range(total):
        links = []
        if actions and rng.random() < 0.2:
            target = actions[rng.randrange(max(0, len(actions) - 200), len(actions))]
            links = [{"agent_id": target["agent_id"], "event_id": target["event_id"], "relation": "caused_by"}]
        actions.append(make_action(agent_id=f"agent-{i % 7}", action_type=f"tool:step-{i % 5}",
                                   payload={"i": i}, links=links))
    return actions


def _kill_storm(bootstrap: str, topics: Any, start_signer: Any, *, total: int, kills: int,
                args: tuple[str, ...], seed: int) -> tuple[list[dict], list[dict], list[Any]]:
    """Produce ``total`` actions in ``kills + 1`` chunks; each time the signer commits the
    first entries of a chunk, wait a random moment and kill -9 it, then start a new one."""
    rng = random.Random(seed)
    actions = _workload(total, rng)
    chunks = [actions[i * total // (kills + 1):(i + 1) * total // (kills + 1)] for i in range(kills + 1)]
    tail = TopicTail(bootstrap, topics.entries)
    signers = [start_signer(*args)]
    kill_log = []
    for i in range(kills):
        before = tail.poll()
        producer = threading.Thread(target=produce, args=(bootstrap, topics.actions, action_items(chunks[i])))
        producer.start()
        signer = signers[-1]
        # the killed one must have got as far as committing something of this chunk
        wait_until(lambda: tail.poll(0.05) > before, 60, f"progress of signer #{len(signers)}",
                   poll=0.0, on_timeout=signer.log)
        # soon after its first commit: a fast machine finishes a chunk within ~0.2 s
        time.sleep(rng.uniform(0.0, 0.08))
        signer.kill9()
        kill_log.append((i, tail.poll(0) - before))
        producer.join()
        signers.append(start_signer(*args))
    produce(bootstrap, topics.actions, action_items(chunks[-1]))
    last = signers[-1]
    wait_until(lambda: tail.poll() >= total, 120, f"{total} entries", on_timeout=last.log)
    # whatever is in flight has landed once a checkpoint covers everything; then no more may come
    cp_tail = TopicTail(bootstrap, topics.checkpoints)
    wait_until(lambda: cp_tail.poll() and any(name == "Checkpoint" and rec["tree_size"] == total
                                               for name, rec in cp_tail.decoded()), 30, "final checkpoint")
    time.sleep(0.5)
    assert tail.poll() == total, f"ledger holds {len(tail.records)} entries, expected exactly {total}"
    entries = [rec for _, rec in tail.decoded("LedgerEntry")]
    cps, _ = split_checkpoints(cp_tail.decoded())
    # most kills must land while the killed signer still had part of its chunk to sequence
    mid_stream = sum(done < len(chunks[i]) for i, done in kill_log)
    print(f"kills (chunk, entries committed by then): {kill_log}")
    assert mid_stream * 2 >= kills, f"only {mid_stream} of {kills} kills landed mid-stream: {kill_log}"
    tail.close()
    cp_tail.close()
    assert {e["action"]["event_id"] for e in entries} == {a["event_id"] for a in actions}
    return entries, cps, signers


def _assert_exactly_once(bootstrap: str, topics: Any, entries: list[dict], cps: list[dict],
                         signers: list, pub: mldsa.PublicKey, *, signed: bool = True) -> None:
    check_ledger(entries, pub, signed=signed)
    check_checkpoints(entries, cps, pub)
    dl = TopicTail(bootstrap, topics.deadletter)
    assert dl.poll(0.5) == 0, "no input was bad: nothing may be dead-lettered"
    dl.close()
    # Offsets commit atomically with the entries, so no restarted signer ever re-reads an
    # action it already sequenced (dedup would hide that in the ledger; the counter does not).
    assert all(s.status().get("duplicates", 0) == 0 for s in signers), [s.status() for s in signers]
    assert all(s.status().get("skipped_on_recovery", 0) == 0 for s in signers)


def test_kill9_storm_with_leader_election(bootstrap, topics, start_signer, signer_key_path) -> None:
    """Six kills of the default (leader-elected) signer, small transactions."""
    pub = mldsa.load_private_key(signer_key_path).public_key()
    entries, cps, signers = _kill_storm(bootstrap, topics, start_signer, total=2100, kills=6,
                                        args=("--batch-size", "40", "--checkpoint-every", "150"), seed=5)
    _assert_exactly_once(bootstrap, topics, entries, cps, signers, pub)


def test_kill9_storm_pyca_backend(bootstrap, topics, start_signer, signer_key_path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Five kills of a signer on the slower pyca backend without leader election (fencing
    by transactional.id alone), transactions of 50, checkpoints by count and by time. A
    chunk (250) takes at least five transactions even when it is all waiting when the
    restarted signer starts to consume, so the kill after the first commit lands mid-stream."""
    monkeypatch.setenv(mldsa.BACKEND_ENV, "pyca")
    pub = mldsa.load_private_key(signer_key_path).public_key()
    entries, cps, signers = _kill_storm(bootstrap, topics, start_signer, total=1500, kills=5,
                                        args=("--no-leader-election", "--batch-size", "50",
                                              "--checkpoint-every", "230"), seed=11)
    _assert_exactly_once(bootstrap, topics, entries, cps, signers, pub)


def test_kill9_storm_checkpoint_mode(bootstrap, topics, start_signer, signer_key_path) -> None:
    """Five kills of a checkpoint-mode signer, whose entries take the compiled fast path
    (D44); transactions of 20: a chunk of 500 is 25 of them, so kills land mid-stream.
    Fencing by transactional.id alone (the lease's takeover is the first storm's subject)."""
    pub = mldsa.load_private_key(signer_key_path).public_key()
    entries, cps, signers = _kill_storm(bootstrap, topics, start_signer, total=3000, kills=5,
                                        args=("--no-leader-election", "--signing-mode", "checkpoint",
                                              "--batch-size", "20", "--checkpoint-every", "170"), seed=17)
    _assert_exactly_once(bootstrap, topics, entries, cps, signers, pub, signed=False)
