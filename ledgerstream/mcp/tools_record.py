"""The write side of the MCP server: record one action through the producer library.

Why a long-lived ledger per agent: the producer library keeps one ``Ledger`` (sender thread,
locked spool) per agent id and process; opening one per call would pay for a Kafka
connection each time and leave spool folders behind. The least recently used one is closed
when more than ``max_agents`` are open, and all are closed (flushed to Kafka or the spool)
when the server stops. Like ``ledgerstream emit``, a Kafka outage never loses the action:
it stays in the agent's spool (``"spooled": true``) for ``ledgerstream sync``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.mcp.server_config import ServeConfig
from ledgerstream.producers.ledger import Ledger, connect
from ledgerstream.tools.ledger_reader import end_offsets, read_entries
from ledgerstream.tools.replay import index_view

log = logging.getLogger("ledgerstream.mcp.server")

ADAPTER = "mcp-server"  # producer metadata: which integration recorded the event
DELIVERY_TIMEOUT = 10.0  # seconds to wait for Kafka's acknowledgement, as ``emit`` does
MAX_WAIT_SEQ = 60.0
POLL_INTERVAL = 0.25


class Recorder:
    """Records actions for any number of agents, one cached :class:`Ledger` each."""

    def __init__(self, cfg: ServeConfig, *, max_agents: int = 32) -> None:
        self.cfg = cfg
        self.max_agents = max_agents
        self._ledgers: OrderedDict[str, Ledger] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, agent_id: str, action_type: str, payload: dict[str, Any] | None = None, *,
               session_id: str | None = None, links: list[str] | None = None,
               wait_for_seq: float = 0.0) -> dict[str, Any]:
        """Emit and wait for Kafka's acknowledgement; with ``wait_for_seq`` > 0, also wait up to
        that many seconds for the signer to sequence it and report its ``seq``."""
        if not 0 <= wait_for_seq <= MAX_WAIT_SEQ:
            raise ValueError(f"wait_for_seq must be between 0 and {MAX_WAIT_SEQ:.0f} seconds")
        bootstrap = self._bootstrap()
        topics = self.cfg.topics()
        start = self._entries_end(bootstrap, topics) if wait_for_seq and bootstrap else None
        ledger = self._ledger(agent_id, bootstrap, topics)
        event_id = ledger.emit(action_type, payload, links=links, session=session_id)
        delivered = bootstrap is not None and ledger.flush(DELIVERY_TIMEOUT) == 0
        seq = None
        if delivered and start is not None:
            seq = wait_sequenced(bootstrap, topics, event_id, start, wait_for_seq)
        return {"event_id": event_id, "agent_id": agent_id, "action_type": action_type, "session_id": session_id,
                "delivered": delivered, "spooled": not delivered, "sequenced": seq is not None, "seq": seq}

    def close(self) -> None:
        """Deliver what is queued (or leave it in the spools) and release every ledger."""
        with self._lock:
            ledgers, self._ledgers = list(self._ledgers.values()), OrderedDict()
        for ledger in ledgers:
            ledger.close(timeout=2.0)

    def _bootstrap(self) -> str | None:
        """Kafka, or None to record offline into the spool (as ``ledgerstream.connect`` does)."""
        try:
            return self.cfg.bootstrap()
        except ConfigError:
            return None

    @staticmethod
    def _entries_end(bootstrap: str, topics: Topics) -> int | None:
        """Where the entries topic ends before the emit (so the new entry lies beyond), or None
        when Kafka does not answer: the action is then recorded (spooled) without the wait."""
        try:
            return end_offsets(bootstrap, topics)["entries"]
        except ConfigError as exc:
            log.warning("not waiting for the sequence number: %s", exc)
            return None

    def _ledger(self, agent_id: str, bootstrap: str | None, topics: Topics) -> Ledger:
        evicted: Ledger | None = None
        with self._lock:
            ledger = self._ledgers.get(agent_id)
            if ledger is not None and (ledger.bootstrap != bootstrap or ledger.topics != topics):
                evicted, ledger = self._ledgers.pop(agent_id), None  # the stack moved: reconnect
            if ledger is None:
                ledger = connect(agent_id, bootstrap, topics=topics, spool_dir=self.cfg.home / "spool",
                                 adapter=ADAPTER)
                self._ledgers[agent_id] = ledger
                if len(self._ledgers) > self.max_agents:
                    evicted = self._ledgers.popitem(last=False)[1]
            self._ledgers.move_to_end(agent_id)
        if evicted is not None:
            evicted.close(timeout=2.0)
        return ledger


def wait_sequenced(bootstrap: str, topics: Topics, event_id: str, start: int, timeout: float) -> int | None:
    """The ledger seq of ``event_id`` once the signer wrote it at or after offset ``start`` of
    the entries topic, or None if it has not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for offset, raw in read_entries(bootstrap, topics, start=start):
            start = offset + 1
            view = index_view(raw)
            if not isinstance(view, str) and view.event_id == event_id:
                return view.seq
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_INTERVAL)
