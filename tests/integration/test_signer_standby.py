"""Hot standby and fencing with real signer subprocesses: one leader writes, the standby
takes over when the leader dies, and a zombie that lost its transactional.id to another
process stops writing. In every case the ledger stays one chain: no fork, gap or repeat."""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
from confluent_kafka import Producer

from ledgerstream.core import mldsa
from support.actions import make_action
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import (TopicTail, action_items, check_checkpoints, check_ledger, produce,
                                 split_checkpoints, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _roles(*signers: Any) -> tuple[Any, Any] | None:
    """(leader, standby) once exactly that is what the two report, else None."""
    a, b = signers
    roles = (a.status().get("role"), b.status().get("role"))
    if roles == ("leader", "standby"):
        return a, b
    if roles == ("standby", "leader"):
        return b, a
    return None


def _actions(n: int, tag: str) -> list[dict[str, Any]]:
    return [make_action(agent_id=f"agent-{i % 5}", payload={tag: i}) for i in range(n)]


def _final_check(bootstrap: str, topics: Any, tail: TopicTail, expected: list[dict], pub: mldsa.PublicKey) -> None:
    wait_until(lambda: tail.poll() >= len(expected), 90, f"{len(expected)} entries")
    cp_tail = TopicTail(bootstrap, topics.checkpoints)
    wait_until(lambda: cp_tail.poll() and any(n == "Checkpoint" and r["tree_size"] == len(expected)
                                              for n, r in cp_tail.decoded()), 30, "the final checkpoint")
    time.sleep(0.3)
    assert tail.poll() == len(expected)
    entries = [rec for _, rec in tail.decoded("LedgerEntry")]
    check_ledger(entries, pub)
    check_checkpoints(entries, split_checkpoints(cp_tail.decoded())[0], pub)
    assert {e["action"]["event_id"] for e in entries} == {a["event_id"] for a in expected}


def test_standby_takes_over_when_the_leader_is_killed(bootstrap, topics, start_signer, signer_key_path) -> None:
    pub = mldsa.load_private_key(signer_key_path).public_key()
    pair = (start_signer("--batch-size", "50"), start_signer("--batch-size", "50"))
    leader, standby = wait_until(lambda: _roles(*pair), 60, "one leader and one standby",
                                 on_timeout=lambda: f"{pair[0].log()}\n{pair[1].log()}")
    actions = _actions(1200, "n")
    # a steady stream, so the leader dies in the middle of it
    stream = threading.Thread(target=lambda: [produce(bootstrap, topics.actions, action_items(actions[i:i + 100]))
                                              or time.sleep(0.25) for i in range(0, 1200, 100)])
    stream.start()
    tail = TopicTail(bootstrap, topics.entries)
    wait_until(lambda: tail.poll() >= 150, 60, "the leader's first entries", on_timeout=leader.log)
    leader.kill9()
    assert tail.poll() < 1200, "the leader was killed after it had finished"
    standby.wait_role("leader", timeout=60)
    stream.join()
    _final_check(bootstrap, topics, tail, actions, pub)
    assert standby.status()["skipped_on_recovery"] == 0


def test_a_fenced_leader_stops_writing_and_the_standby_continues(bootstrap, topics, start_signer,
                                                                 signer_key_path) -> None:
    """A third process calls init_transactions with the signers' transactional.id (what a
    new leader does to a zombie): the old leader's next commit is refused, it exits with
    status 3, releases the lease, and the standby continues the same chain."""
    pub = mldsa.load_private_key(signer_key_path).public_key()
    pair = (start_signer(), start_signer())
    leader, standby = wait_until(lambda: _roles(*pair), 60, "one leader and one standby",
                                 on_timeout=lambda: f"{pair[0].log()}\n{pair[1].log()}")
    first, second = _actions(100, "before"), _actions(100, "after")
    produce(bootstrap, topics.actions, action_items(first))
    tail = TopicTail(bootstrap, topics.entries)
    wait_until(lambda: tail.poll() >= 100, 60, "100 entries", on_timeout=leader.log)

    fencer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topics.entries}.signer"})
    fencer.init_transactions(30)
    produce(bootstrap, topics.actions, action_items(second))
    wait_until(lambda: leader.proc.poll() is not None, 60, "the fenced leader to exit", on_timeout=leader.log)
    assert leader.proc.returncode == 3, leader.log()
    assert "fenced" in leader.log().lower() or "fatal" in leader.log().lower()
    standby.wait_role("leader", timeout=60)
    _final_check(bootstrap, topics, tail, first + second, pub)


def test_a_paused_leader_is_a_zombie_once_the_standby_took_over(bootstrap, topics, start_signer,
                                                                signer_key_path) -> None:
    """The classic zombie: the leader freezes (SIGSTOP) long enough to lose its lease, the
    standby takes over and fences it; when the zombie wakes up it must not write."""
    pub = mldsa.load_private_key(signer_key_path).public_key()
    pair = (start_signer(), start_signer())
    leader, standby = wait_until(lambda: _roles(*pair), 60, "one leader and one standby",
                                 on_timeout=lambda: f"{pair[0].log()}\n{pair[1].log()}")
    first, second, third = _actions(80, "one"), _actions(80, "two"), _actions(80, "three")
    produce(bootstrap, topics.actions, action_items(first))
    tail = TopicTail(bootstrap, topics.entries)
    wait_until(lambda: tail.poll() >= 80, 60, "80 entries", on_timeout=leader.log)
    os.kill(leader.pid, signal.SIGSTOP)
    try:
        produce(bootstrap, topics.actions, action_items(second))
        standby.wait_role("leader", timeout=60)
        wait_until(lambda: tail.poll() >= 160, 60, "the new leader's entries", on_timeout=standby.log)
    finally:
        os.kill(leader.pid, signal.SIGCONT)
    produce(bootstrap, topics.actions, action_items(third))
    wait_until(lambda: leader.proc.poll() is not None, 60, "the zombie to exit", on_timeout=leader.log)
    assert leader.proc.returncode == 3, leader.log()
    _final_check(bootstrap, topics, tail, first + second + third, pub)
    assert standby.proc.poll() is None and standby.status()["role"] == "leader"


def test_a_warm_standby_follows_the_leader_and_takes_over_with_its_state(bootstrap, topics, start_signer,
                                                                         signer_key_path) -> None:
    """The standby adopts what the leader commits while it waits (status ``next_seq``), so its
    takeover reads only the last moments (``recovered_from.warm``); it keeps the dedup window
    and the snapshot chunks, so a duplicate is still recognised and the snapshots it writes
    are adopted by the next start."""
    pub = mldsa.load_private_key(signer_key_path).public_key()
    args = ("--snapshot-every", "200", "--batch-size", "100")
    pair = (start_signer(*args), start_signer(*args))
    leader, standby = wait_until(lambda: _roles(*pair), 60, "one leader and one standby",
                                 on_timeout=lambda: f"{pair[0].log()}\n{pair[1].log()}")
    first = _actions(600, "first")
    produce(bootstrap, topics.actions, action_items(first))
    tail = TopicTail(bootstrap, topics.entries)
    wait_until(lambda: tail.poll() >= 600, 60, "600 entries", on_timeout=leader.log)
    wait_until(lambda: standby.status().get("next_seq") == 600, 30, "the standby to follow", on_timeout=standby.log)
    assert standby.status()["role"] == "standby"
    leader.kill9()
    standby.wait_role("leader", timeout=60)
    got = standby.status()["recovered_from"]
    assert got["warm"] is True and got["tail_entries"] == 0, got
    second = _actions(450, "second")
    produce(bootstrap, topics.actions, action_items([first[7], *second]))  # first[7] is a duplicate
    _final_check(bootstrap, topics, tail, first + second, pub)
    assert standby.status()["duplicates"] == 1
    wait_until(lambda: standby.status()["snapshots"]["last_seq"] >= 800, 30, "a snapshot by the new leader")
    standby.kill9()
    again = start_signer(*args, "--no-leader-election")
    again.wait_role("leader", timeout=60)
    assert again.status()["recovered_from"]["snapshot_seq"] >= 800
    assert again.status()["recovered_from"]["snapshots_rejected"] == 0, again.log()
    third = _actions(20, "third")
    produce(bootstrap, topics.actions, action_items([first[9], second[9], *third]))
    _final_check(bootstrap, topics, tail, first + second + third, pub)
    assert again.status()["duplicates"] == 2


def test_a_session_timeout_the_broker_refuses_is_a_clear_error_not_an_endless_wait(
        start_signer, topics, bootstrap) -> None:
    """The embedded broker's group.min.session.timeout.ms is 1000: a lease asking for 500 ms
    could never be won. The signer says why and exits 2 instead of standing by forever."""
    signer = start_signer("--session-timeout-ms", "500")
    code = wait_until(lambda: signer.proc.poll(), 60, "the signer to exit", on_timeout=signer.log)
    assert code == 2, signer.log()
    assert "error: the broker refuses a session timeout of 500 ms" in signer.log()
    assert TopicTail(bootstrap, topics.entries).poll(0.2) == 0
