"""m-of-n approvals over Kafka, both sides.

Agent side (:class:`ApprovalClient`): publish an ``ApprovalRequest`` for an event id and
payload commitment that are fixed before asking, then wait on the approvals topic for
``ApprovalResponse`` records. Each response is checked with
``ledgerstream.core.approvals.verify_approval`` (a configured approver, that approver's
key, a valid ML-DSA-65 signature over ``records.approval_message`` of this event);
anything else is ignored. ``m`` approvals -> approved; so many rejections that ``m`` is out
of reach -> denied; the deadline -> timeout.

Approver side (:func:`list_requests`, :func:`respond`): used by ``ledgerstream approvals
list`` and ``ledgerstream approve``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ledgerstream.core import records
from ledgerstream.core.wire import codec
from ledgerstream.core.approvals import APPROVE, REJECT, ApprovalInvalid, ApproverSet, verify_approval
from ledgerstream.core.errors import ConfigError, DecodeError, LedgerstreamError
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.producers.delivery import kafka_log
from ledgerstream.producers.topic_reader import read_all
from ledgerstream.producers.uuid7 import uuid7
from ledgerstream.core.kafka_security import kafka_config

log = logging.getLogger("ledgerstream.producer.approvals")

APPROVED, DENIED, TIMEOUT = "approved", "approval_denied", "approval_timeout"


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Outcome:
    """How a request ended: the policy decision to record and the valid responses received."""

    decision: str
    request_id: str
    reason: str
    approvals: list[dict[str, Any]] = field(default_factory=list)


class ApprovalClient:
    """Asks the configured approvers and waits for m valid approvals (agent side)."""

    def __init__(self, bootstrap: str | None, topic: str, approvers: ApproverSet) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.approvers = approvers

    def request(self, *, agent_id: str, event_id: str, session_id: str | None, action_type: str,
                payload: bytes | None, salt: bytes | None, payload_hash: bytes,
                rule: str | None, reason: str | None, timeout: float | None = None) -> Outcome:
        """Publish the request and block until approved, denied or timed out."""
        request_id = uuid7()
        wait = self.approvers.timeout if timeout is None else timeout
        if self.bootstrap is None:
            return Outcome(TIMEOUT, request_id, "no Kafka bootstrap: approvers cannot be reached")
        requested = now_us()
        req = {
            "request_id": request_id, "event_id": event_id, "agent_id": agent_id, "session_id": session_id,
            "action_type": action_type, "payload": payload, "payload_salt": salt, "payload_hash": payload_hash,
            "rule": rule, "reason": reason, "approvers": sorted(self.approvers.approvers),
            "required": self.approvers.m, "requested_at": requested, "expires_at": requested + int(wait * 1e6),
        }
        event = {"event_id": event_id, "agent_id": agent_id, "action_type": action_type, "payload_hash": payload_hash}
        try:
            return self._ask(req, event, time.monotonic() + wait)
        except Exception as exc:  # a broker problem must end as a recorded timeout, not a crash
            log.error("approval request %s for %s failed: %s", request_id, event_id, exc)
            return Outcome(TIMEOUT, request_id, f"approvals topic unreachable: {exc}")

    def _ask(self, req: dict[str, Any], event: dict[str, Any], deadline: float) -> Outcome:
        from confluent_kafka import Consumer, Producer, TopicPartition

        request_id = req["request_id"]
        consumer = Consumer(kafka_config(self.bootstrap, "producer", {
            "group.id": f"ledgerstream-approval-{request_id}", "enable.auto.commit": False, "logger": kafka_log}))
        try:
            remaining = max(0.1, deadline - time.monotonic())
            meta = consumer.list_topics(self.topic, timeout=min(5.0, remaining))
            info = meta.topics.get(self.topic)
            if info is None or info.error is not None:
                raise ConfigError(f"approvals topic {self.topic} does not exist")
            starts = [TopicPartition(self.topic, p, _end_offset(consumer, self.topic, p, deadline))
                      for p in sorted(info.partitions)]
            consumer.assign(starts)  # responses can only follow the request: read from here on
            producer = Producer(kafka_config(self.bootstrap, "producer", {
                "enable.idempotence": True, "acks": "all", "logger": kafka_log}))
            producer.produce(self.topic, codec.encode("ApprovalRequest", req), request_id.encode())
            if producer.flush(min(5.0, remaining)) > 0:
                raise ConfigError("could not publish the approval request within 5s")
            log.info("approval request %s for %s %s published; waiting for %d of %d approvers",
                     request_id, req["action_type"], req["event_id"], self.approvers.m, len(self.approvers.approvers))
            return self._collect(consumer, request_id, event, deadline)
        finally:
            consumer.close()

    def _collect(self, consumer: Any, request_id: str, event: dict[str, Any], deadline: float) -> Outcome:
        m, n = self.approvers.m, len(self.approvers.approvers)
        valid: dict[str, dict[str, Any]] = {}
        while (remaining := deadline - time.monotonic()) > 0:
            msg = consumer.poll(min(0.5, remaining))
            if msg is None or msg.error() is not None:
                continue
            try:
                name, resp = codec.decode(msg.value(), expect=("ApprovalResponse", "ApprovalRequest"))
            except DecodeError:
                continue
            if name != "ApprovalResponse" or resp["request_id"] != request_id or resp["approver_id"] in valid:
                continue
            approval = {k: resp[k] for k in ("request_id", "approver_id", "key_id", "decision", "approved_at",
                                             "signature")}
            try:
                verify_approval(event, approval, self.approvers.approvers)
            except ApprovalInvalid as exc:
                log.warning("ignoring response to %s: %s", request_id, exc)
                continue
            valid[approval["approver_id"]] = approval
            approves = [a for a in valid.values() if a["decision"] == APPROVE]
            rejects = [a for a in valid.values() if a["decision"] == REJECT]
            if len(approves) >= m:
                return Outcome(APPROVED, request_id, f"approved by {', '.join(a['approver_id'] for a in approves)} "
                               f"({len(approves)} of {n}, {m} required)", list(valid.values()))
            if len(rejects) > n - m:
                return Outcome(DENIED, request_id, f"rejected by {', '.join(a['approver_id'] for a in rejects)}",
                               list(valid.values()))
        got = sum(1 for a in valid.values() if a["decision"] == APPROVE)
        return Outcome(TIMEOUT, request_id, f"{got} of {m} required approvals before the deadline",
                       list(valid.values()))


def _end_offset(consumer: Any, topic: str, partition: int, deadline: float) -> int:
    """The partition's high watermark, retrying while leadership settles (new topics)."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    settling = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                KafkaError.UNKNOWN_TOPIC_OR_PART)
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5.0)[1]
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.retriable() or err.code() in settling) or time.monotonic() + 0.2 > deadline:
                raise
            time.sleep(0.2)


# --- approver side ----------------------------------------------------------------------------

def read_requests(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Every request on the approvals topic with the responses it got (``responses`` list)."""
    found: dict[str, dict[str, Any]] = {}
    responses: list[dict[str, Any]] = []
    for msg in read_all(bootstrap, topic, timeout=timeout, role="producer"):
        try:
            name, rec = codec.decode(msg.value(), expect=("ApprovalRequest", "ApprovalResponse"))
        except DecodeError as exc:
            log.warning("skipping undecodable record at %s[%d]@%d: %s", topic, msg.partition(), msg.offset(), exc)
            continue
        if name == "ApprovalRequest":
            found[rec["request_id"]] = {**rec, "responses": []}
        else:
            responses.append(rec)
    for resp in responses:
        if resp["request_id"] in found:
            found[resp["request_id"]]["responses"].append(resp)
    return found


def summary(req: dict[str, Any], now: int | None = None) -> dict[str, Any]:
    """The JSON view of a request that ``approvals list`` prints (responses unverified)."""
    now = now_us() if now is None else now
    approves = sorted({r["approver_id"] for r in req["responses"] if r["decision"] == APPROVE})
    rejects = sorted({r["approver_id"] for r in req["responses"] if r["decision"] == REJECT})
    open_ = now < req["expires_at"] and len(approves) < req["required"] \
        and len(rejects) <= len(req["approvers"]) - req["required"]
    return {
        "request_id": req["request_id"], "agent_id": req["agent_id"], "event_id": req["event_id"],
        "action_type": req["action_type"], "session_id": req["session_id"], "rule": req["rule"],
        "payload": None if req["payload"] is None else req["payload"].decode("utf-8", "replace"),
        "payload_hash": req["payload_hash"].hex(), "approvers": req["approvers"], "required": req["required"],
        "approved_by": approves, "rejected_by": rejects, "requested_at": req["requested_at"],
        "expires_at": req["expires_at"], "expires_in_s": max(0.0, round((req["expires_at"] - now) / 1e6, 1)),
        "pending": open_,
    }


def respond(bootstrap: str, topic: str, request_id: str, key: PrivateKey, approver_id: str, *,
            decision: str = APPROVE, comment: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Sign ``decision`` for a request and publish it; LedgerstreamError if the request is
    unknown, expired, or its payload does not match the commitment it asks to sign."""
    if decision not in (APPROVE, REJECT):
        raise ValueError("decision must be approve or reject")
    records.validate_identifier("approver_id", approver_id)
    records.validate_identifier("request_id", request_id)
    req = read_requests(bootstrap, topic, timeout).get(request_id)
    if req is None:
        raise LedgerstreamError(f"no approval request {request_id} on {topic}")
    if now_us() >= req["expires_at"]:
        raise LedgerstreamError(f"approval request {request_id} expired; the agent no longer waits")
    if approver_id not in req["approvers"]:
        log.warning("%s is not among the approvers %s of request %s; the agent will ignore this answer",
                    approver_id, req["approvers"], request_id)
    if req["payload"] is not None and records.payload_commitment(req["payload_salt"], req["payload"]) \
            != req["payload_hash"]:
        raise LedgerstreamError(f"request {request_id}: payload does not match its payload_hash; refusing to sign")
    approved_at = now_us()
    message = records.approval_message(
        request_id=request_id, approver_id=approver_id, decision=decision, approved_at=approved_at,
        event_id=req["event_id"], agent_id=req["agent_id"], action_type=req["action_type"],
        payload_hash=req["payload_hash"])
    resp = {"request_id": request_id, "approver_id": approver_id, "key_id": key.public_key().key_id,
            "decision": decision, "approved_at": approved_at, "signature": key.sign(message), "comment": comment}
    from confluent_kafka import Producer

    producer = Producer(kafka_config(bootstrap, "producer", {"enable.idempotence": True, "acks": "all",
                                                             "logger": kafka_log}))
    producer.produce(topic, codec.encode("ApprovalResponse", resp), request_id.encode())
    if producer.flush(timeout) > 0:
        raise LedgerstreamError(f"could not publish the response to {bootstrap} within {timeout:.0f}s")
    return {**resp, "event_id": req["event_id"], "agent_id": req["agent_id"], "action_type": req["action_type"]}
