"""The one encoder of everything ledgerstream hashes or signs (docs/spec.md).

Every hash and signature input is built here and nowhere else: canonical payloads
(RFC 8785), payload commitments, entry hashes, the entry and checkpoint signing
messages, the checkpoint note and approval messages. All inputs are domain-separated
with an ASCII tag ending in a NUL byte so that no two kinds of message can collide.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from typing import Any, Mapping

import rfc8785

SPEC_VERSION = 1
ZERO_HASH = bytes(32)
HASH_LEN = 32
SALT_LEN = 32

TAG_PAYLOAD = b"ledgerstream/v1/payload\x00"
TAG_ENTRY = b"ledgerstream/v1/entry\x00"
TAG_ENTRY_SIGNATURE = b"ledgerstream/v1/entry-signature\x00"
TAG_APPROVAL = b"ledgerstream/v1/approval\x00"

#: colon-separated segments of [A-Za-z0-9_.-], e.g. ``tool:search``, ``data:delete:users``
ACTION_TYPE_RE = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*$")
MAX_ACTION_TYPE_LEN = 256
MAX_ID_LEN = 256
#: JCS numbers are IEEE doubles: every integer we hash must stay below 2**53
MAX_SAFE_INT = 2**53 - 1
#: Unicode general categories refused in identifiers and action types (docs/spec.md,
#: "Identifiers"): controls, format characters (bidi overrides, zero-width), line and
#: paragraph separators, surrogates and unassigned code points. Categories come from the
#: Unicode Character Database of the running Python (``UNICODE_VERSION``; 14.0.0 for 3.11).
FORBIDDEN_ID_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})
UNICODE_VERSION = unicodedata.unidata_version


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- payloads -------------------------------------------------------------------------

def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON value; TypeError/ValueError for non-JSON input."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"payload is not canonicalisable JSON: {exc}") from exc
    except (TypeError, ValueError):
        raise
    except Exception as exc:  # rfc8785 raises its own types for odd inputs
        raise TypeError(f"payload is not JSON-serialisable: {exc}") from exc


def payload_commitment(salt: bytes, canonical_payload: bytes) -> bytes:
    """SHA-256(TAG_PAYLOAD || salt || canonical payload): hides low-entropy payloads and
    lets a payload be erased later while every chain link still verifies."""
    if len(salt) != SALT_LEN:
        raise ValueError(f"payload salt must be {SALT_LEN} bytes, got {len(salt)}")
    return sha256(TAG_PAYLOAD + salt + canonical_payload)


def jcs_without_floats(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value that holds no floats (the entry view), fast.

    For strings, integers below 2**53, booleans, null, arrays and objects with ASCII keys,
    JCS output is exactly what ``json.dumps`` writes with sorted keys, no whitespace and no
    ASCII escaping (same escapes: \\b \\t \\n \\f \\r \\" \\\\ and lowercase \\u00xx for other
    controls). The test suite checks this against the rfc8785 package on random inputs.
    """
    return _JCS_ENCODER.encode(value).encode("utf-8")


# built once: json.dumps with options builds a new encoder per call, about half its cost
_JCS_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def jsonable(value: Any) -> Any:
    """A decoded record made JSON-friendly for display: byte strings as lowercase hex."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


# --- entries ---------------------------------------------------------------------------

def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def action_hash_view(action: Mapping[str, Any]) -> dict[str, Any]:
    """The committed view of an ActionEvent: everything except the erasable payload and salt."""
    policy = action.get("policy")
    trace = action.get("trace")
    producer = action["producer"]
    return {
        "event_id": action["event_id"],
        "agent_id": action["agent_id"],
        "session_id": action.get("session_id"),
        "action_type": action["action_type"],
        "payload_hash": _hex(action["payload_hash"]),
        "occurred_at": action["occurred_at"],
        "links": [{"agent_id": l["agent_id"], "event_id": l["event_id"], "relation": l.get("relation", "caused_by")}
                  for l in action.get("links") or []],
        "policy": None if policy is None else {
            "decision": policy["decision"], "rule": policy.get("rule"), "reason": policy.get("reason")},
        "approvals": [{"request_id": a["request_id"], "approver_id": a["approver_id"], "key_id": a["key_id"],
                       "decision": a["decision"], "approved_at": a["approved_at"], "signature": _hex(a["signature"])}
                      for a in action.get("approvals") or []],
        "trace": None if trace is None else {
            "trace_id": trace["trace_id"], "span_id": trace["span_id"], "parent_span_id": trace.get("parent_span_id")},
        "producer": {"library": producer.get("library", "ledgerstream"), "version": producer["version"],
                     "host": producer["host"], "pid": producer["pid"], "adapter": producer.get("adapter")},
        "offline": bool(action.get("offline", False)),
    }


def entry_hash_view(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object whose JCS bytes the entry hash covers (docs/spec.md, 'Entry hash')."""
    source = entry["source"]
    return {
        "v": entry.get("spec_version", SPEC_VERSION),
        "seq": entry["seq"],
        "prev_hash": _hex(entry["prev_hash"]),
        "received_at": entry["received_at"],
        "source": {"topic": source["topic"], "partition": source["partition"], "offset": source["offset"]},
        "agent_seq": entry["agent_seq"],
        "agent_prev_hash": _hex(entry["agent_prev_hash"]),
        "resolved_links": [{"agent_id": l["agent_id"], "event_id": l["event_id"], "status": l["status"],
                            "seq": l.get("seq"), "entry_hash": _hex(l.get("entry_hash"))}
                           for l in entry.get("resolved_links") or []],
        "key_id": entry["key_id"],
        "action": action_hash_view(entry["action"]),
    }


def entry_hash_input(entry: Mapping[str, Any]) -> bytes:
    """TAG_ENTRY || JCS(entry_hash_view(entry)): the exact preimage of entry_hash."""
    return TAG_ENTRY + jcs_without_floats(entry_hash_view(entry))


def entry_hash(entry: Mapping[str, Any]) -> bytes:
    return sha256(entry_hash_input(entry))


_q = json.encoder.encode_basestring  # a JSON string, as json.dumps(ensure_ascii=False) writes it


def _q_opt(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _jcs_typed_action(a: Mapping[str, Any]) -> str:
    policy, trace, producer = a["policy"], a["trace"], a["producer"]
    links, approvals = a["links"], a["approvals"]
    return "".join((
        '{"action_type":', _q(a["action_type"]), ',"agent_id":', _q(a["agent_id"]), ',"approvals":[',
        ",".join(['{"approved_at":' + str(x["approved_at"]) + ',"approver_id":' + _q(x["approver_id"])
                  + ',"decision":' + _q(x["decision"]) + ',"key_id":' + _q(x["key_id"]) + ',"request_id":'
                  + _q(x["request_id"]) + ',"signature":"' + x["signature"].hex() + '"}' for x in approvals]),
        '],"event_id":', _q(a["event_id"]), ',"links":[',
        ",".join(['{"agent_id":' + _q(x["agent_id"]) + ',"event_id":' + _q(x["event_id"]) + ',"relation":'
                  + _q(x["relation"]) + "}" for x in links]),
        '],"occurred_at":', str(a["occurred_at"]), ',"offline":', "true" if a["offline"] else "false",
        ',"payload_hash":"', a["payload_hash"].hex(), '","policy":',
        "null" if policy is None else '{"decision":' + _q(policy["decision"]) + ',"reason":'
        + _q_opt(policy["reason"]) + ',"rule":' + _q_opt(policy["rule"]) + "}",
        ',"producer":{"adapter":', _q_opt(producer["adapter"]), ',"host":', _q(producer["host"]), ',"library":',
        _q(producer["library"]), ',"pid":', str(producer["pid"]), ',"version":', _q(producer["version"]),
        '},"session_id":', _q_opt(a["session_id"]), ',"trace":',
        "null" if trace is None else '{"parent_span_id":' + _q_opt(trace["parent_span_id"]) + ',"span_id":'
        + _q(trace["span_id"]) + ',"trace_id":' + _q(trace["trace_id"]) + "}",
        "}"))


def entry_hash_typed(entry: Mapping[str, Any]) -> bytes:
    """:func:`entry_hash`, byte for byte, ~2.5x faster, for an entry whose values have exactly
    the LedgerEntry schema's Python types (str, int, bytes, bool, None; every field present),
    as the signer builds them from a decoded ActionEvent. The JCS text of
    :func:`entry_hash_view` is written directly, keys in sorted order; every other input
    must use :func:`entry_hash`. Tests compare the two on random entries and the vectors."""
    source, links = entry["source"], entry["resolved_links"]
    text = "".join((
        '{"action":', _jcs_typed_action(entry["action"]),
        ',"agent_prev_hash":"', entry["agent_prev_hash"].hex(), '","agent_seq":', str(entry["agent_seq"]),
        ',"key_id":', _q(entry["key_id"]), ',"prev_hash":"', entry["prev_hash"].hex(),
        '","received_at":', str(entry["received_at"]), ',"resolved_links":[',
        ",".join(['{"agent_id":' + _q(x["agent_id"]) + ',"entry_hash":'
                  + ("null" if x["entry_hash"] is None else '"' + x["entry_hash"].hex() + '"')
                  + ',"event_id":' + _q(x["event_id"]) + ',"seq":' + ("null" if x["seq"] is None else str(x["seq"]))
                  + ',"status":' + _q(x["status"]) + "}" for x in links]),
        '],"seq":', str(entry["seq"]), ',"source":{"offset":', str(source["offset"]), ',"partition":',
        str(source["partition"]), ',"topic":', _q(source["topic"]), '},"v":', str(entry["spec_version"]), "}"))
    return sha256(TAG_ENTRY + text.encode("utf-8"))


def entry_signing_message(entry_hash_value: bytes) -> bytes:
    """The bytes ML-DSA-65 signs for an entry: TAG_ENTRY_SIGNATURE || entry_hash."""
    if len(entry_hash_value) != HASH_LEN:
        raise ValueError("entry hash must be 32 bytes")
    return TAG_ENTRY_SIGNATURE + bytes(entry_hash_value)


def merkle_leaf_input(entry_hash_value: bytes) -> bytes:
    """The RFC 9162 leaf data of an entry: its 32-byte entry hash."""
    return bytes(entry_hash_value)


# --- checkpoints -----------------------------------------------------------------------

def checkpoint_body(origin: str, tree_size: int, root_hash: bytes, chain_head: bytes, created_at: int) -> bytes:
    """The checkpoint note body (C2SP tlog-checkpoint layout plus two extension lines).

    This is exactly what the signer signs and what the RFC 3161 token covers.
    """
    if not origin or "\n" in origin:
        raise ValueError("origin must be a non-empty single line")
    return (
        f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"
        f"chain-head {chain_head.hex()}\ntime {created_at}\n"
    ).encode("utf-8")


def parse_checkpoint_body(body: bytes) -> dict[str, Any]:
    """Inverse of :func:`checkpoint_body`; ValueError on anything malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("checkpoint body is not UTF-8") from exc
    lines = text.split("\n")
    if len(lines) != 6 or lines[-1] != "":
        raise ValueError("checkpoint body must have exactly 5 newline-terminated lines")
    origin, size, root_b64, head_line, time_line = lines[:5]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise ValueError(f"bad tree size line {size!r}")
    root = base64.b64decode(root_b64, validate=True)
    if len(root) != HASH_LEN:
        raise ValueError("root hash must be 32 bytes")
    if not head_line.startswith("chain-head ") or not time_line.startswith("time "):
        raise ValueError("missing chain-head or time line")
    head = bytes.fromhex(head_line[len("chain-head "):])
    if len(head) != HASH_LEN:
        raise ValueError("chain head must be 32 bytes")
    created = time_line[len("time "):]
    if not created.isdigit():
        raise ValueError("bad time line")
    parsed = {"origin": origin, "tree_size": int(size), "root_hash": root, "chain_head": head,
              "created_at": int(created)}
    if checkpoint_body(**parsed) != body:
        raise ValueError("checkpoint body is not in canonical form")
    return parsed


# --- approvals ---------------------------------------------------------------------------

def approval_message(*, request_id: str, approver_id: str, decision: str, approved_at: int,
                     event_id: str, agent_id: str, action_type: str, payload_hash: bytes) -> bytes:
    """What an approver signs: TAG_APPROVAL || JCS of the request and the event it covers."""
    return TAG_APPROVAL + rfc8785.dumps({
        "request_id": request_id, "approver_id": approver_id, "decision": decision,
        "approved_at": approved_at, "event_id": event_id, "agent_id": agent_id,
        "action_type": action_type, "payload_hash": bytes(payload_hash).hex(),
    })


# --- validation --------------------------------------------------------------------------

def validate_identifier(field: str, value: Any, *, optional: bool = False) -> None:
    """Refuse an id that is not a clean, visible string: ValueError naming ``field`` and the
    first offending code point as U+XXXX (docs/spec.md, "Identifiers").

    Applies to new actions only (the producer and the signer); entries already sequenced are
    never re-checked, so old ledgers still verify.
    """
    if value is None and optional:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        raise ValueError(f"{field} must be a non-empty string of at most {MAX_ID_LEN} characters")
    # str.isprintable() is False for every category refused here (and for Zs, Co), from the
    # same Unicode database: the per-character look-up runs only for the rare rest
    if not value.isprintable():
        for index, ch in enumerate(value):
            if unicodedata.category(ch) in FORBIDDEN_ID_CATEGORIES:
                raise ValueError(f"{field} contains U+{ord(ch):04X} ({unicodedata.category(ch)}, "
                                 f"{unicodedata.name(ch, 'unnamed')}) at index {index}: control, "
                                 "format, separator and unassigned characters are not allowed")
    if value[0].isspace() or value[-1].isspace():
        raise ValueError(f"{field} must not start or end with whitespace")


def validate_action_type(action_type: Any) -> None:
    if not isinstance(action_type, str) or not action_type:
        raise ValueError("action_type must be a non-empty string")
    if len(action_type) > MAX_ACTION_TYPE_LEN:
        raise ValueError(f"action_type longer than {MAX_ACTION_TYPE_LEN} characters")
    if not ACTION_TYPE_RE.fullmatch(action_type):  # not match(): its $ also matches before a final \n
        raise ValueError(f"malformed action_type {action_type!r}: use colon-separated segments "
                         "of letters, digits, '_', '.', '-' (e.g. 'tool:search')")


class _NotFast(Exception):
    """The payload holds a float or a large integer: only the rfc8785 package decides."""


def _small_int(text: str) -> int:
    if len(text) > 15:  # 15 characters, sign included, stay below 2**53
        raise _NotFast
    return int(text)


def _no_float(text: str) -> float:
    raise _NotFast


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


_HIGH_CODE_POINT = re.compile("[\ue000-\U0010ffff]")
_FAST_DECODER = json.JSONDecoder(parse_float=_no_float, parse_int=_small_int, parse_constant=_no_constant)
_FULL_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def validate_canonical_payload(payload: bytes) -> None:
    """ValueError unless ``payload`` is UTF-8 JSON in RFC 8785 canonical form (the bytes a
    commitment must cover, docs/spec.md "Payload").

    Fast path (about 17 us of CPU for 170 bytes, against 53 us with the rfc8785 package,
    docs/decisions.md): a payload without floats, integers of 16 or more characters or code
    points from U+E000 up (where UTF-16 key order, which JCS sorts by, can differ from code
    point order) is re-encoded by
    :data:`_JCS_ENCODER`, which writes JCS bytes for exactly these values (see
    :func:`jcs_without_floats`). Everything else, and every mismatch, is decided by parsing
    and re-canonicalising with the rfc8785 package.
    """
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"payload is not UTF-8: {exc}") from exc
    if text.isascii() or _HIGH_CODE_POINT.search(text) is None:
        try:
            if _JCS_ENCODER.encode(_FAST_DECODER.decode(text)) == text:
                return
        except (_NotFast, ValueError, RecursionError):
            pass
    try:
        canonical = rfc8785.dumps(_FULL_DECODER.decode(text))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"payload is not JSON: {exc}") from exc
    except RecursionError as exc:  # a hostile nesting depth must not crash the signer
        raise ValueError("payload is nested too deeply to check") from exc
    except Exception as exc:  # rfc8785's own errors (big integers, lone surrogates, ...)
        raise ValueError(f"payload is not canonicalisable JSON: {exc}") from exc
    if canonical != bytes(payload):
        raise ValueError("payload is not in RFC 8785 canonical form "
                         f"({len(payload)} bytes; canonical form has {len(canonical)})")


def validate_action(action: Mapping[str, Any]) -> None:
    """Semantic checks the Avro schema cannot express; ValueError names the field."""
    validate_identifier("event_id", action.get("event_id"))
    validate_identifier("agent_id", action.get("agent_id"))
    validate_identifier("session_id", action.get("session_id"), optional=True)
    validate_action_type(action.get("action_type"))
    validate_identifier("action_type", action.get("action_type"))
    if len(action.get("payload_hash") or b"") != HASH_LEN:
        raise ValueError("payload_hash must be 32 bytes")
    payload, salt = action.get("payload"), action.get("payload_salt")
    if (payload is None) != (salt is None):
        raise ValueError("payload and payload_salt must be present together or both absent")
    if payload is not None and payload_commitment(salt, payload) != action["payload_hash"]:
        raise ValueError("payload_hash does not commit to payload and payload_salt")
    if payload is not None:
        validate_canonical_payload(payload)
    if not isinstance(action.get("occurred_at"), int) or not 0 <= action["occurred_at"] <= MAX_SAFE_INT:
        raise ValueError("occurred_at must be an integer in [0, 2**53) (microseconds since the epoch)")
    for approval in action.get("approvals") or []:
        validate_identifier("approvals[].request_id", approval.get("request_id"))
        validate_identifier("approvals[].approver_id", approval.get("approver_id"))
        if not isinstance(approval.get("approved_at"), int) or not 0 <= approval["approved_at"] <= MAX_SAFE_INT:
            raise ValueError("approvals[].approved_at must be an integer in [0, 2**53)")
    for link in action.get("links") or []:
        if not link.get("agent_id") or not link.get("event_id"):
            raise ValueError("every link needs agent_id and event_id")
        validate_identifier("links[].agent_id", link.get("agent_id"))
        validate_identifier("links[].event_id", link.get("event_id"))
