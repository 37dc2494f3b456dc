"""The agent-facing API: ``connect()`` returns a :class:`Ledger` that records actions.

Every method on the agent's thread only validates, canonicalises (RFC 8785), commits
(salted SHA-256) and enqueues; the :class:`~ledgerstream.producers.sender.Sender` thread
journals to the spool and delivers to Kafka. Transport trouble never raises: without a
broker the ledger runs offline into the spool. Caller mistakes raise at once (ValueError
for a malformed action type, TypeError for a payload that is not JSON), and so do policy
outcomes (:class:`PolicyDenied`).
"""
from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import weakref
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from ledgerstream.core import config, records
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.producers import context
from ledgerstream.producers.canonical import canonical_payload
from ledgerstream.producers.context import Link, Placement
from ledgerstream.producers.delivery import Delivery
from ledgerstream.producers.entropy import random_bytes
from ledgerstream.producers.errors import ApprovalDenied, ApprovalTimeout, PolicyDenied
from ledgerstream.producers.policy import ALLOW, DENY, Policy, Verdict, as_policy
from ledgerstream.producers.redact import Redactor
from ledgerstream.producers.sender import Sender
from ledgerstream.producers.spool import DEFAULT_MAX_BYTES, default_root, open_for_agent
from ledgerstream.producers.uuid7 import uuid7
from ledgerstream.core.wire.action_writer import ActionEventWriter

log = logging.getLogger("ledgerstream.producer")

DEFAULT_MAX_PAYLOAD = 512 * 1024
# A record's size is estimated on the agent's thread (the sender encodes later). The estimate
# stays just below the encoded size, so that journaling never frees room that was not there.
RECORD_OVERHEAD = 140           # ids, salt, commitment, producer metadata, framing
LINK_OVERHEAD = 3
TRACE_SIZE = 50
APPROVAL_SIZE = 3_400           # one approval: a 3,309-byte ML-DSA-65 signature plus ids
DROPPED_ACTION = "ledgerstream:dropped"
DROP_REPORT_SIZE = 400          # a dropped-events record: its payload is a few numbers
MAX_CACHED_TYPES = 4096         # validated action types remembered per ledger

try:
    _VERSION = metadata.version("ledgerstream")
except metadata.PackageNotFoundError:  # running from a source tree
    _VERSION = "0+unknown"
_HOST = socket.gethostname()

_open_ledgers: "weakref.WeakSet[Ledger]" = weakref.WeakSet()


class Prepared(NamedTuple):
    """A payload ready to record: canonical bytes, salt and the commitment over both."""

    canonical: bytes
    salt: bytes
    payload_hash: bytes
    hash_only: bool


class Session:
    """``with ledger.session(...)`` / ``async with``: groups events under one session id."""

    def __init__(self, ledger: "Ledger", session_id: str, parent: Link | None) -> None:
        self.ledger = ledger
        self.session_id = session_id
        self.parent = parent
        self._entered: tuple[context.Scope, Any] | None = None

    def __enter__(self) -> "Session":
        if self._entered is not None:
            raise RuntimeError("a session can be entered only once at a time")
        self._entered = context.enter(self.ledger.agent_id, session_id=self.session_id,
                                      extra_links=(self.parent,) if self.parent else ())
        return self

    def __exit__(self, *exc: object) -> None:
        scope, token = self._entered
        self._entered = None
        context.leave(scope, token)

    async def __aenter__(self) -> "Session":
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def current_link(self) -> str:
        return self.ledger.current_link()


class Ledger:
    """One agent's connection to the ledger (thread-safe; one per agent id and process)."""

    def __init__(self, agent_id: str, *, bootstrap: str | None = None, topics: Topics | None = None,
                 spool_dir: str | os.PathLike[str] | None = None, max_spool_bytes: int = DEFAULT_MAX_BYTES,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD, hash_only: bool = False,
                 redact: Iterable[str] = (), policy: Any = None, approval_timeout: float | None = None,
                 producer_config: Mapping[str, Any] | None = None, adapter: str | None = None) -> None:
        records.validate_identifier("agent_id", agent_id)
        self.agent_id = agent_id
        self._base_size = RECORD_OVERHEAD + len(agent_id)
        self._valid_types: set[str] = set()  # action types already validated
        self.bootstrap = bootstrap
        self.topics = topics or config.resolve_topics()
        self.hash_only = bool(hash_only)
        self.redactor = Redactor(redact)
        self.policy: Policy | None = as_policy(policy)
        self.approval_timeout = approval_timeout
        self.max_spool_bytes = max_spool_bytes
        self.max_payload_bytes = max_payload_bytes
        self._writer = ActionEventWriter(agent_id, {"library": "ledgerstream", "version": _VERSION,
                                                    "host": _HOST, "pid": os.getpid(), "adapter": adapter})
        self._lock = threading.Lock()
        self._closed = False
        self._last_event_id: str | None = None
        self._emitted = self._links = self._errors = 0
        self._dropped = self._dropped_unreported = 0
        self._drop_span: tuple[int, int] | None = None
        self._approval_client: Any = None
        root = Path(spool_dir).expanduser() if spool_dir is not None else default_root()
        spool = open_for_agent(root, agent_id)
        factory: Callable[[], Delivery] | None = None
        if bootstrap is not None:
            # one agent, one partition: the sender counts completions, so success needs no report
            overrides = {"delivery.report.only.error": True, **(producer_config or {})}
            factory = partial(Delivery, bootstrap, self.topics.actions, overrides)
        else:
            log.warning("ledger for %s has no Kafka bootstrap: recording offline into %s "
                        "(deliver later with 'ledgerstream sync')", agent_id, spool.path)
        try:
            self._sender = Sender(spool, self._encode, factory, name=f"ledgerstream-sender:{agent_id}",
                                  on_delivered=self._drops_after_delivery)
        except BaseException:
            spool.close()
            raise
        _open_ledgers.add(self)

    # --- recording ----------------------------------------------------------------------------
    def emit(self, action_type: str, payload: Mapping[str, Any] | None = None, *,
             links: Iterable[Any] | None = None, session: str | None = None,
             hash_only: bool | None = None, redact: Iterable[str] | None = None) -> str:
        """Record one action; returns its event id (a UUIDv7 string) without waiting for Kafka.

        Policies apply: a denied action is recorded with decision ``deny`` and raises
        :class:`PolicyDenied`; one that needs approval blocks until m approvers sign
        (or raises :class:`ApprovalTimeout`).
        """
        if action_type not in self._valid_types:
            records.validate_action_type(action_type)
            if len(self._valid_types) < MAX_CACHED_TYPES:
                self._valid_types.add(action_type)
        self._check_open()
        records.validate_identifier("session", session, optional=True)
        extra = tuple(context.to_link(link) for link in links) if links else ()
        prepared = self.prepare(payload, redact=redact, hash_only=hash_only)
        where = context.placement(self.agent_id)
        event_id = uuid7()
        if self.policy is None:
            policy, approvals = None, None
        else:
            policy, approvals = self.authorize(action_type, prepared, event_id, where, extra, session)
        return self.record(action_type, prepared, event_id=event_id, where=where, links=extra,
                           session=session, policy=policy, approvals=approvals)

    def prepare(self, payload: Mapping[str, Any] | None, *, redact: Iterable[str] | None = None,
                hash_only: bool | None = None) -> Prepared:
        """Redact, canonicalise (RFC 8785) and commit to a payload; TypeError if it is not JSON."""
        if payload is None:
            payload = {}
        elif type(payload) is not dict and not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a dict (a JSON object), got {type(payload).__name__}")
        redactor = self.redactor + Redactor(redact) if redact else self.redactor
        canonical = canonical_payload(redactor.apply(payload) if redactor else payload)
        if len(canonical) > self.max_payload_bytes:
            raise ValueError(f"payload is {len(canonical)} bytes canonicalised, more than max_payload_bytes "
                             f"({self.max_payload_bytes}); record a summary or use hash_only")
        salt = random_bytes(records.SALT_LEN)
        return Prepared(canonical, salt, records.payload_commitment(salt, canonical),
                        self.hash_only if hash_only is None else bool(hash_only))

    def authorize(self, action_type: str, prepared: Prepared, event_id: str, where: Placement,
                  links: tuple[Link, ...] = (), session: str | None = None
                  ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Evaluate the policy before the action runs; returns (policy record, approvals).

        A deny, an approval timeout or a rejection is recorded under ``event_id`` and raised.
        """
        if self.policy is None:
            return None, []
        verdict = self.policy.evaluate(action_type)
        if verdict.decision == ALLOW:
            return verdict.as_record(), []
        if verdict.decision == DENY:
            self.record(action_type, prepared, event_id=event_id, where=where, links=links, session=session,
                        policy=verdict.as_record())
            raise PolicyDenied(action_type, event_id=event_id, rule=verdict.rule, reason=verdict.reason)
        return self._await_approvals(action_type, prepared, event_id, where, links, session, verdict)

    def _await_approvals(self, action_type: str, prepared: Prepared, event_id: str, where: Placement,
                         links: tuple[Link, ...], session: str | None, verdict: Verdict
                         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        outcome = self._approvals().request(
            agent_id=self.agent_id, event_id=event_id, session_id=session or where.session_id,
            action_type=action_type, payload=None if prepared.hash_only else prepared.canonical,
            salt=None if prepared.hash_only else prepared.salt, payload_hash=prepared.payload_hash,
            rule=verdict.rule, reason=verdict.reason, timeout=self.approval_timeout)
        policy = verdict.as_record(outcome.decision, outcome.reason)
        if outcome.decision == "approved":
            return policy, outcome.approvals
        self.record(action_type, prepared, event_id=event_id, where=where, links=links, session=session,
                    policy=policy, approvals=outcome.approvals)
        error = ApprovalTimeout if outcome.decision == "approval_timeout" else ApprovalDenied
        raise error(action_type, event_id=event_id, rule=verdict.rule, reason=outcome.reason)

    def _approvals(self) -> Any:
        if self._approval_client is None:
            from ledgerstream.producers.approvals import ApprovalClient

            self._approval_client = ApprovalClient(self.bootstrap, self.topics.approvals, self.policy.approvers)
        return self._approval_client

    def record(self, action_type: str, prepared: Prepared, *, event_id: str | None = None,
               where: Placement | None = None, links: tuple[Link, ...] = (), session: str | None = None,
               policy: dict[str, Any] | None = None, approvals: list[dict[str, Any]] | None = None,
               occurred_at: int | None = None, span_id: str | None = None) -> str:
        """Enqueue one validated event (no policy check); the building block of emit and action."""
        self._check_open()
        event_id = event_id or uuid7()
        where = where or context.placement(self.agent_id)
        all_links = tuple(dict.fromkeys(where.links + links)) if where.links or links else ()
        trace = None if where.trace_id is None else (where.trace_id, span_id or context.new_span_id(),
                                                     where.parent_span_id)
        approvals = approvals or []
        session_id = session if session is not None else where.session_id
        size = self._base_size + len(action_type) + (0 if prepared.hash_only else len(prepared.canonical))
        if session_id:
            size += len(session_id)
        if all_links:
            size += sum(len(link.agent_id) + len(link.event_id) + len(link.relation) + LINK_OVERHEAD
                        for link in all_links)
        if trace:
            size += TRACE_SIZE
        if approvals:
            size += APPROVAL_SIZE * len(approvals)
        now = time.time_ns() // 1000
        with self._lock:
            if self._sender.backlog_bytes() + size > self.max_spool_bytes:
                self._drop(action_type, now)
                return event_id
            if self._dropped_unreported:
                self._report_drops()
            self._emitted += 1
            self._links += len(all_links)
            self._last_event_id = event_id
        item = (event_id, session_id, action_type,
                None if prepared.hash_only else prepared.canonical, None if prepared.hash_only else prepared.salt,
                prepared.payload_hash, occurred_at or now, all_links, policy, approvals, trace)
        self._sender.submit(item, size)
        context.note_event(self.agent_id, event_id)
        return event_id

    def _drop(self, action_type: str, now: int) -> None:
        """Spool full: refuse the newest event, count it, and say so (lock held)."""
        self._dropped += 1
        self._dropped_unreported += 1
        first = self._drop_span[0] if self._drop_span else now
        self._drop_span = (first, now)
        if self._dropped_unreported == 1 or self._dropped_unreported % 1000 == 0:
            log.error("ledger spool of %s is full (%d bytes undelivered, max_spool_bytes=%d): dropping new "
                      "events (%d so far, latest %s); is Kafka reachable?", self.agent_id,
                      self._sender.backlog_bytes(), self.max_spool_bytes, self._dropped, action_type)

    def _drops_after_delivery(self) -> None:
        """Sender thread, after Kafka acknowledged records: record the drops as soon as the
        spool has room again, even if the agent emits nothing more."""
        if not self._dropped_unreported:
            return
        with self._lock:
            if self._dropped_unreported and not self._closed and \
                    self._sender.backlog_bytes() + DROP_REPORT_SIZE <= self.max_spool_bytes:
                self._report_drops()

    def _report_drops(self) -> None:
        """Record how many events were dropped, as soon as there is room (lock held)."""
        count, (first, last) = self._dropped_unreported, self._drop_span
        self._dropped_unreported, self._drop_span = 0, None
        payload = records.canonical_json({"dropped": count, "first_dropped_at": first, "last_dropped_at": last,
                                          "reason": "spool full", "max_spool_bytes": self.max_spool_bytes})
        salt = random_bytes(records.SALT_LEN)
        item = (uuid7(), None, DROPPED_ACTION, payload, salt, records.payload_commitment(salt, payload),
                time.time_ns() // 1000, (), None, [], None)
        self._emitted += 1
        self._sender.submit(item, DROP_REPORT_SIZE)

    def _encode(self, item: tuple, offline: bool) -> bytes:
        """Avro-encode a queued event (runs on the sender thread)."""
        return self._writer.encode(*item, offline)

    # --- decorator, sessions, links -------------------------------------------------------------
    def action(self, action_type: str, *, redact: Iterable[str] | None = None,
               hash_only: bool | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a sync or async function so that every call is authorised and recorded."""
        from ledgerstream.producers.action import decorate

        records.validate_action_type(action_type)
        redactor = Redactor(redact or ())
        return lambda fn: decorate(self, fn, action_type, redactor, hash_only)

    def session(self, name: str | None = None, *, parent: Any = None, session_id: str | None = None) -> Session:
        """A session scope; ``parent`` (a token from :meth:`current_link` in another process, or
        a Link) links every event of the session to the event that started it."""
        if session_id is None:
            session_id = f"{name}-{uuid7()}" if name else uuid7()
        records.validate_identifier("session_id", session_id)
        return Session(self, session_id, None if parent is None else context.to_link(parent))

    def current_link(self) -> str:
        """A token naming this agent's latest event here, to hand to another process."""
        event_id = context.latest_event(self.agent_id) or self._last_event_id
        if event_id is None:
            raise RuntimeError(f"agent {self.agent_id} has recorded no event yet")
        return context.make_token(self.agent_id, event_id)

    # --- delivery -----------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> int:
        """Wait until Kafka acknowledged every event (offline: until journaled); returns how
        many are still undelivered."""
        return self._sender.flush(timeout)

    def close(self, timeout: float = 5.0) -> int:
        """Stop accepting events, try to deliver until ``timeout``, release the spool.

        Returns within ``timeout`` even with the broker down; whatever is undelivered stays
        in the spool for the next run or ``ledgerstream sync``. Returns that count.
        """
        with self._lock:
            if self._closed:
                return self._sender.undelivered()
            if self._dropped_unreported:  # a trace of the drops, over the spool's bound if need be
                self._report_drops()
            self._closed = True
        _open_ledgers.discard(self)
        return self._sender.close(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring: what was emitted, journaled, delivered, dropped."""
        sender = self._sender
        return {
            "agent_id": self.agent_id, "emitted": self._emitted, "journaled": sender.journaled,
            "delivered": sender.delivered, "undelivered": sender.undelivered(), "dropped": self._dropped,
            "lost": sender.lost, "errors": self._errors, "links": self._links,
            "quarantined": len(sender.spool.quarantined), "online": sender.online,
            "spool": str(sender.spool.path), "spool_bytes": sender.spool.pending_bytes,
        }

    def count_error(self) -> None:
        """Note a recording failure the agent was shielded from (see stats()['errors'])."""
        with self._lock:
            self._errors += 1

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"ledger for {self.agent_id} is closed")

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "offline" if self.bootstrap is None else self.bootstrap
        return f"<Ledger {self.agent_id} {mode} spool={self._sender.spool.path}>"


def connect(agent_id: str, bootstrap: str | None = None, **options: Any) -> Ledger:
    """A Ledger for ``agent_id``. Kafka is ``bootstrap``, else ``$LEDGERSTREAM_BOOTSTRAP``, else
    the dev stack; with none of them the ledger records offline into its spool.

    Options: ``topics`` (a Topics), ``spool_dir`` (root of the per-agent spools),
    ``max_spool_bytes``, ``max_payload_bytes``, ``hash_only``, ``redact`` (paths),
    ``policy`` (Policy, file path, dict or rules), ``approval_timeout``,
    ``producer_config`` (librdkafka overrides), ``adapter`` (framework name).
    """
    if bootstrap is None:
        try:
            bootstrap = config.resolve_bootstrap(None)
        except ConfigError:
            bootstrap = None
    return Ledger(agent_id, bootstrap=bootstrap, **options)


@atexit.register
def _close_all() -> None:
    """Journal what is still queued when the interpreter exits (daemon threads die then)."""
    for ledger in list(_open_ledgers):
        ledger.close(timeout=2.0)
