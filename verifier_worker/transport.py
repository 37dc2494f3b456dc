"""A faust transport whose consumer reads only committed records.

faust-streaming builds its aiokafka consumer with ``isolation_level="read_uncommitted"``
unless the whole app runs in exactly-once mode (transactional producers per partition).
A verifier must never see records of aborted signer transactions (they would look like
forks and duplicates), and it produces nothing transactional, so this transport keeps
faust's at-least-once processing and only switches the consumer to ``read_committed``.
tests/integration/test_verifier_worker.py proves it with an aborted transaction.
"""
from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

READ_COMMITTED = "read_committed"


class _ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_isolation_level"):  # fail loudly if aiokafka changes
            raise RuntimeError("aiokafka consumer has no _isolation_level: cannot force read_committed")
        consumer._isolation_level = READ_COMMITTED
        return consumer


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(faust_aiokafka.Transport):
    """Install with ``app.transport = ReadCommittedTransport(app.conf.broker_consumer, app)``."""

    Consumer = _ReadCommittedConsumer
