"""Issue 20: a checkpoint read before the entries it covers is pending, never a finding.

An idle verifier once raised ``checkpoint_root_mismatch`` ("checkpoint claims 12601 entries
but the ledger has 11937") right after a signer restart: it had been caught up for longer
than the checkpoint wait, read a checkpoint before its entries, and judged it with an
observation that predated it. Here the checkpoint is committed to the real topic *before*
its entries, after the verifier sat idle for longer than the wait; then a checkpoint whose
entries never come must still be reported once it has waited."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from ledgerstream.core.config import Topics
from support.ledger_builder import LedgerBuilder, LedgerWriter, enc, entry_bytes
from test_verifier_worker import KEY, WorkerProcess, alerts_of, verifier_home, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 3.0


def test_checkpoint_before_its_entries_waits_and_one_without_entries_is_reported(
        bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    home = verifier_home(tmp_path, KEY)
    builder, writer = LedgerBuilder(KEY), LedgerWriter(bootstrap, topics)
    first = builder.many(100)
    writer.commit([entry_bytes(e) for e in first], [enc("Checkpoint", builder.checkpoint())])
    worker = WorkerProcess(home, "v1", bootstrap, topics, "--checkpoint-wait-seconds", str(WAIT)).start()
    try:
        worker.wait_position(100)
        time.sleep(WAIT + 1.5)  # caught up and idle for longer than the wait

        later = builder.many(50)
        writer.commit([], [enc("Checkpoint", builder.checkpoint())])   # the checkpoint first ...
        time.sleep(WAIT * 0.6)                                           # ... read, observed caught up ...
        writer.commit([entry_bytes(e) for e in later])                   # ... then its entries
        st = worker.wait_position(150)
        wait_until(lambda: (worker.status() or {}).get("last_checkpoint", {}).get("tree_size") == 150, 30,
                   "the checkpoint over 150 verified", worker.log)
        time.sleep(WAIT + 1.0)  # any late verdict on it would be out by now
        st = worker.status()
        assert st["alerts"] == {} and alerts_of(bootstrap, topics, "v1") == {}, st["alerts"]

        builder.many(10)                                                   # entries never published
        writer.commit([], [enc("Checkpoint", builder.checkpoint())])       # a checkpoint claiming them
        wait_until(lambda: (worker.status() or {}).get("alerts", {}).get("checkpoint_root_mismatch") == 1,
                   WAIT + 30, "the overdue checkpoint reported", worker.log)
        (alert,) = alerts_of(bootstrap, topics, "v1").values()
        assert alert["kind"] == "checkpoint_root_mismatch" and "claims 160 entries" in alert["detail"]
    finally:
        worker.stop()


def test_an_over_claiming_checkpoint_settled_by_expiry_does_not_stop_the_verification_behind_it(
        bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    # docs/decisions.md D43: a checkpoint claiming more entries than the ledger has, committed to
    # the real topic ahead of a genuine checkpoint of the ledger's newest entry, is reported once
    # the wait is over (docs/alerts.md `checkpoint_root_mismatch`); the genuine one behind it is
    # verified and the worker keeps running (it used to raise out of the Merkle tree)
    home = verifier_home(tmp_path, KEY)
    builder, writer = LedgerBuilder(KEY), LedgerWriter(bootstrap, topics)
    writer.commit([entry_bytes(e) for e in builder.many(100)], [enc("Checkpoint", builder.checkpoint())])
    worker = WorkerProcess(home, "v1", bootstrap, topics, "--checkpoint-wait-seconds", str(WAIT)).start()
    try:
        worker.wait_position(100)
        tip = builder.many(5)
        exact = builder.checkpoint()
        builder.many(5)                                                    # entries never published
        writer.commit([entry_bytes(e) for e in tip])
        worker.wait_position(105)
        writer.commit([], [enc("Checkpoint", builder.checkpoint()), enc("Checkpoint", exact)])
        wait_until(lambda: (worker.status() or {}).get("last_checkpoint", {}).get("tree_size") == 105, WAIT + 30,
                   "the checkpoint over 105 verified behind the one claiming 110", worker.log)
        st = worker.status()
        assert st["alerts"] == {"checkpoint_root_mismatch": 1}, st["alerts"]
        (alert,) = alerts_of(bootstrap, topics, "v1").values()
        assert alert["kind"] == "checkpoint_root_mismatch" and "claims 110 entries" in alert["detail"]
        assert worker.proc.poll() is None, worker.log()
    finally:
        worker.stop()


def test_a_verifier_far_behind_holds_the_checkpoint_topic_back_and_verifies_every_checkpoint(
        bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    # docs/decisions.md D48: a ledger written before the verifier starts, a checkpoint every
    # 100 entries. With --checkpoint-read-ahead 2 the reader holds the checkpoints topic back
    # (the log says so) and reads it again where it stopped: every one of the 30 checkpoints
    # is verified, none is skipped, nothing is reported
    home = verifier_home(tmp_path, KEY)
    builder, writer = LedgerBuilder(KEY), LedgerWriter(bootstrap, topics)
    for _ in range(30):
        writer.commit([entry_bytes(e) for e in builder.many(100)], [enc("Checkpoint", builder.checkpoint())])
    worker = WorkerProcess(home, "v1", bootstrap, topics, "--checkpoint-read-ahead", "2",
                           "--batch-size", "200").start()
    try:
        worker.wait_position(3000)
        wait_until(lambda: (worker.status() or {}).get("last_checkpoint", {}).get("tree_size") == 3000, 60,
                   "the last checkpoint verified", worker.log)
        st = worker.status()
        assert st["stats"]["checkpoints_verified"] == 30 and st["alerts"] == {}, st
        assert f"holding {topics.checkpoints} back" in worker.log_path.read_text(errors="replace"), worker.log()
    finally:
        worker.stop()
