"""Issue 20, no hang: with the broker frozen (SIGSTOP) while the signer drains a backlog,
its Kafka calls block; the watchdog ends it with status 4 instead of leaving a live but
stuck signer. After the broker resumes, a new signer finishes the ledger exactly once."""
from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.config import Topics
from ledgerstream.core.watchdog import EXIT_WATCHDOG
from support.actions import make_action
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import TopicTail, action_items, check_ledger, produce, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def own_broker(tmp_path):
    """A broker of this test's own: it gets frozen, which other tests must not see."""
    from ledgerstream.stack.kafka import KafkaBroker

    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        if broker.pid:
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


def test_a_frozen_broker_makes_the_watchdog_end_the_signer_and_a_restart_finishes_exactly_once(
        own_broker, signer_key_path, tmp_path) -> None:
    from conftest import SignerProcess
    from ledgerstream.stack.topics import ensure_topics

    bootstrap = own_broker.bootstrap
    topics = Topics.with_prefix(f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(bootstrap, topics)
    pub = mldsa.load_private_key(signer_key_path).public_key()
    actions = [make_action(agent_id=f"agent-{i % 5}", payload={"i": i}) for i in range(20_000)]
    produce(bootstrap, topics.actions, action_items(actions))
    signer = SignerProcess(bootstrap, topics, signer_key_path, tmp_path, "--watchdog-seconds", "5",
                           "--batch-size", "500", "--no-leader-election")
    restarted = None
    try:
        tail = TopicTail(bootstrap, topics.entries)
        wait_until(lambda: tail.poll() >= 1000, 60, "the drain under way", on_timeout=signer.log)
        os.kill(own_broker.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            code = signer.proc.wait(60)
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
        assert code == EXIT_WATCHDOG, signer.log()
        assert time.monotonic() - frozen_at < 30, "ended within the limit plus the watch period"
        assert "made no progress" in signer.log()

        restarted = SignerProcess(bootstrap, topics, signer_key_path, tmp_path, "--no-leader-election")
        wait_until(lambda: tail.poll() >= len(actions), 180, "every action in the ledger", on_timeout=restarted.log)
        tail.poll(1.0)
        entries = [rec for _, rec in tail.decoded("LedgerEntry")]
        check_ledger(entries, pub)   # gapless, chained, signed
        assert sorted(e["action"]["event_id"] for e in entries) == sorted(a["event_id"] for a in actions)
    finally:
        signer.stop()
        if restarted is not None:
            restarted.stop()
