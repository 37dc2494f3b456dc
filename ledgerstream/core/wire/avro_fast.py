"""Hand-written Avro binary for the signer's hot path, byte-identical to :mod:`codec`.

fastavro's generic reader and writer spend most of their time walking the schema. The
signer reads one ``ActionEvent`` and writes one ``LedgerEntry`` per action, and the
``LedgerEntry`` embeds the ``ActionEvent`` unchanged, so:

* :func:`read_action` decodes an ``ActionEvent`` single object written with the current
  schema, and accepts it only in **canonical** form: minimal varints, arrays as one block
  plus the terminating zero, booleans 0/1, union indexes 0/1, ``int`` values within 32
  bits, strict UTF-8, no trailing bytes. Canonical means ``codec.encode("ActionEvent",
  record)`` gives back exactly the bytes that were read. Anything else (another writer
  schema, a non-canonical or corrupt body) returns None and the caller uses
  ``codec.decode``, so errors and dead-letter reasons are codec's.
* :func:`encode_ledger_entry` writes a ``LedgerEntry`` as the concatenation of its fields
  in schema order (Avro binary encoding of a record), **splicing** the action's original
  body bytes in place of the ``action`` field instead of re-encoding the decoded dict. It
  is used only with a body :func:`read_action` accepted; otherwise it is ``codec.encode``.
* :func:`read_entry` is the verifier's: a ``LedgerEntry`` in canonical form, decoded and
  its entry hash preimage written by the compiled ``_entry_reader`` (``setup.py``; C,
  because there fastavro's decode and the JCS text cost ~20 µs of the checker's ~30 per
  entry). Without a compiler it is not built and the verifier uses ``codec`` as before.

Both are active only while the shipped schemas have the fingerprints written for here;
after a schema change they step aside (``codec`` is always correct). Tests compare both
against ``codec`` on varied and on randomly corrupted records. The writing helpers
(zig-zag varints, length-prefixed bytes and strings, union branches) are the shared ones.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Sequence

from ledgerstream.core import records
from ledgerstream.core.wire import codec

try:  # compiled at install time when a C compiler is present (setup.py, optional)
    from ledgerstream.core.wire import _entry_reader
except ImportError:  # pragma: no cover - depends on the install
    _entry_reader = None

#: The one place that says which schemas/*.avsc the hand-written readers and writers (this
#: module, ``_entry_reader.c``, the producer's ``ledgerstream/core/wire/action_writer.py``) implement: their
#: CRC-64-AVRO fingerprints, in wire (little-endian) order. ``active()`` compares them with
#: the fingerprints the codec computes from the shipped schema files.
ACTION_EVENT_FINGERPRINT = bytes.fromhex("b26d6cd2ffaf80c2")
LEDGER_ENTRY_FINGERPRINT = bytes.fromhex("4e434aaaa2e359ed")

NULL, SOME = b"\x00", b"\x02"  # union branch 0 (null) and branch 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_SMALL = [bytes([(n << 1) ^ (n >> 63)]) for n in range(-64, 64)]  # one-byte varints, index n + 64


# --- writing -----------------------------------------------------------------------------

def write_long(n: int) -> bytes:
    """Avro ``int``/``long``: zig-zag, then a little-endian base-128 varint (minimal)."""
    if -64 <= n < 64:
        return _SMALL[n + 64]
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise ValueError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    if z < 0x4000:
        return bytes(((z & 0x7F) | 0x80, z >> 7))
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def write_bytes(b: bytes) -> bytes:
    return write_long(len(b)) + b


def write_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return write_long(len(b)) + b


def write_opt_bytes(b: bytes | None) -> bytes:
    return NULL if b is None else SOME + write_long(len(b)) + b


def write_opt_long(n: int | None) -> bytes:
    return NULL if n is None else SOME + write_long(n)


# --- reading (canonical forms only) --------------------------------------------------------

class _NotCanonical(Exception):
    """The fast reader does not take this body; codec.decode will (or will say why not)."""


def _long(d: bytes, p: int) -> tuple[int, int]:
    b = d[p]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), p + 1
    n, shift, start = 0, 0, p
    while True:
        b = d[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise _NotCanonical("varint longer than 10 bytes")
    if b == 0 or n >> 64:  # a zero last byte is a redundant (non-minimal) continuation
        raise _NotCanonical(f"non-minimal or oversized varint at {start}")
    return (n >> 1) ^ -(n & 1), p


def _int(d: bytes, p: int) -> tuple[int, int]:
    n, p = _long(d, p)
    if not _INT_MIN <= n <= _INT_MAX:
        raise _NotCanonical("int out of range")
    return n, p


def _raw(d: bytes, p: int) -> tuple[bytes, int]:
    b = d[p]
    if b < 0x80 and not b & 1:
        n, p = b >> 1, p + 1
    else:
        n, p = _long(d, p)
        if n < 0:
            raise _NotCanonical("negative length")
    end = p + n
    if end > len(d):
        raise _NotCanonical("truncated")
    return d[p:end], end


def _str(d: bytes, p: int) -> tuple[str, int]:
    b = d[p]
    if b < 0x80 and not b & 1:  # the usual short string, inline
        end = p + 1 + (b >> 1)
        if end > len(d):
            raise _NotCanonical("truncated")
        return d[p + 1:end].decode("utf-8"), end
    raw, p = _raw(d, p)
    return raw.decode("utf-8"), p  # strict: UnicodeDecodeError -> not taken


def _branch(d: bytes, p: int) -> tuple[bool, int]:
    """Index of a ["null", X] union: False for null, True for X."""
    b = d[p]
    if b == 0:
        return False, p + 1
    if b == 2:
        return True, p + 1
    raise _NotCanonical("bad union index")


def _opt_str(d: bytes, p: int) -> tuple[str | None, int]:
    some, p = _branch(d, p)
    return _str(d, p) if some else (None, p)


def _opt_raw(d: bytes, p: int) -> tuple[bytes | None, int]:
    some, p = _branch(d, p)
    return _raw(d, p) if some else (None, p)


def _count(d: bytes, p: int) -> tuple[int, int]:
    """Item count of an array written as one block (or none, when empty)."""
    n, p = _long(d, p)
    if n < 0:
        raise _NotCanonical("array block with a byte size")
    return n, p


def _end_of_array(d: bytes, p: int) -> int:
    if d[p] != 0:
        raise _NotCanonical("array in more than one block")
    return p + 1


def _action(d: bytes, p: int) -> dict[str, Any]:
    event_id, p = _str(d, p)
    agent_id, p = _str(d, p)
    session_id, p = _opt_str(d, p)
    action_type, p = _str(d, p)
    payload, p = _opt_raw(d, p)
    salt, p = _opt_raw(d, p)
    payload_hash, p = _raw(d, p)
    occurred_at, p = _long(d, p)
    n, p = _count(d, p)
    links = []
    if n:
        for _ in range(n):
            l_agent, p = _str(d, p)
            l_event, p = _str(d, p)
            relation, p = _str(d, p)
            links.append({"agent_id": l_agent, "event_id": l_event, "relation": relation})
        p = _end_of_array(d, p)
    some, p = _branch(d, p)
    policy = None
    if some:
        decision, p = _str(d, p)
        rule, p = _opt_str(d, p)
        reason, p = _opt_str(d, p)
        policy = {"decision": decision, "rule": rule, "reason": reason}
    n, p = _count(d, p)
    approvals = []
    if n:
        for _ in range(n):
            request_id, p = _str(d, p)
            approver_id, p = _str(d, p)
            key_id, p = _str(d, p)
            a_decision, p = _str(d, p)
            approved_at, p = _long(d, p)
            signature, p = _raw(d, p)
            approvals.append({"request_id": request_id, "approver_id": approver_id, "key_id": key_id,
                              "decision": a_decision, "approved_at": approved_at, "signature": signature})
        p = _end_of_array(d, p)
    some, p = _branch(d, p)
    trace = None
    if some:
        trace_id, p = _str(d, p)
        span_id, p = _str(d, p)
        parent, p = _opt_str(d, p)
        trace = {"trace_id": trace_id, "span_id": span_id, "parent_span_id": parent}
    library, p = _str(d, p)
    version, p = _str(d, p)
    host, p = _str(d, p)
    pid, p = _int(d, p)
    adapter, p = _opt_str(d, p)
    flag = d[p]
    if flag > 1:
        raise _NotCanonical("boolean not 0 or 1")
    if p + 1 != len(d):
        raise _NotCanonical("trailing bytes")
    return {
        "event_id": event_id, "agent_id": agent_id, "session_id": session_id, "action_type": action_type,
        "payload": payload, "payload_salt": salt, "payload_hash": payload_hash, "occurred_at": occurred_at,
        "links": links, "policy": policy, "approvals": approvals, "trace": trace,
        "producer": {"library": library, "version": version, "host": host, "pid": pid, "adapter": adapter},
        "offline": flag == 1,
    }


_ACTION_HEADER = codec.MAGIC + ACTION_EVENT_FINGERPRINT
_LEDGER_ENTRY_HEADER = codec.MAGIC + LEDGER_ENTRY_FINGERPRINT
#: the headers this module reads: the standard one and the legacy byte order (codec)
_ACTION_HEADERS = (_ACTION_HEADER, codec.MAGIC + ACTION_EVENT_FINGERPRINT[::-1])
_LEDGER_ENTRY_HEADERS = (_LEDGER_ENTRY_HEADER, codec.MAGIC + LEDGER_ENTRY_FINGERPRINT[::-1])


def is_ledger_entry_header(data: bytes) -> bool:
    """True when ``data`` starts with the header of the LedgerEntry schema implemented here
    (in either byte order)."""
    return data[:codec.HEADER_LEN] in _LEDGER_ENTRY_HEADERS
_active: bool | None = None


def active() -> bool:
    """True while the shipped ActionEvent and LedgerEntry schemas are the ones implemented here."""
    global _active
    if _active is None:
        reg = codec.registry()
        _active = (reg.schema("ActionEvent").fingerprint == ACTION_EVENT_FINGERPRINT
                   and reg.schema("LedgerEntry").fingerprint == LEDGER_ENTRY_FINGERPRINT)
    return _active


def read_action(data: bytes) -> dict[str, Any] | None:
    """The ActionEvent in ``data`` (a single object), or None when the fast path does not apply.

    Not None only for a record written with the current ActionEvent schema in canonical
    form; the result then equals ``codec.decode(data, expect="ActionEvent")[1]`` and
    ``codec.encode("ActionEvent", result)[10:] == data[10:]`` (so its body may be spliced;
    the header may be the legacy one).
    """
    if not (_active if _active is not None else active()):
        return None
    if type(data) is not bytes or not data.startswith(_ACTION_HEADERS):  # (what confluent-kafka hands out)
        return None
    try:
        return _action(data, 10)
    except (_NotCanonical, IndexError, UnicodeDecodeError):
        return None


def read_valid_action(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    """The signer's fast path: ``(action, action_text)`` for an ActionEvent that
    :func:`read_action` takes and for which the compiled reader proves every rule of
    ``records.validate_action`` but the payload commitment (the caller checks that one),
    ``action_text`` being the action's JCS text inside the entry hash preimage. None when
    not compiled or not proven; the caller then takes the reference path, which also says
    what is wrong."""
    if _entry_reader is None or not (_active if _active is not None else active()):
        return None
    if type(data) is not bytes or not data.startswith(_ACTION_HEADERS):
        return None
    return _entry_reader.read_action(data)


def read_sealable_action(data: bytes) -> tuple[str, str, str, bytes, bytes, tuple[tuple[str, str], ...]] | None:
    """What :func:`seal_entry` needs of an action that :func:`read_valid_action` takes, whose
    strings are all printable ASCII without ``"`` or ``\\`` and whose payload commitment holds:
    ``(event_id, agent_id, action_type, payload_hash, action_text, links)``, ``links`` being
    ``((agent_id, event_id), ...)``; None otherwise (then the caller's dict path decides)."""
    if _entry_reader is None or not (_active if _active is not None else active()):
        return None
    if type(data) is not bytes or not data.startswith(_ACTION_HEADERS):
        return None
    return _entry_reader.read_sealable_action(data)


def entry_hash_input(entry: dict[str, Any], action_text: bytes) -> bytes | None:
    """``records.entry_hash_input(entry)`` for an entry whose action came from
    :func:`read_valid_action` (``action_text``), written by the compiled writer; None when one
    of the entry's own strings needs a JSON escape (then ``records.entry_hash_typed``)."""
    assert _entry_reader is not None  # read_valid_action returned the text
    return _entry_reader.entry_preimage(entry, action_text)


def seal_entry(action_record: bytes, action_text: bytes, seq: int, prev_hash: bytes, received_at: int,
               topic: str, partition: int, offset: int, agent_seq: int, agent_prev_hash: bytes,
               resolved_links: list[dict[str, Any]] | None, key_id: str) -> tuple[bytes, bytes, bytes] | None:
    """``(entry_hash, merkle.leaf_hash(entry_hash), encode_ledger_entry(entry, action_record[10:]))``
    in one compiled call, for the entry built from these fields around the action that
    :func:`read_sealable_action` read from ``action_record`` (``action_text``), with no
    signature or timestamp token (``resolved_links``: None for none); None when one of the
    entry's own strings needs a JSON escape (then the dict path)."""
    assert _entry_reader is not None  # read_sealable_action returned the text
    return _entry_reader.seal_entry(_LEDGER_ENTRY_HEADER, action_record, action_text, records.SPEC_VERSION,
                                    seq, prev_hash, received_at, topic, partition, offset, agent_seq,
                                    agent_prev_hash, resolved_links, key_id)


def read_entry(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    """The LedgerEntry in ``data`` and its entry hash preimage, or None when the fast path
    does not apply.

    Not None only for a record written with the current LedgerEntry schema in canonical form
    (the rules of :func:`read_action`) whose strings JSON would not escape, and only when the
    compiled reader is installed; the result then equals ``(codec.decode(data,
    expect="LedgerEntry")[1], records.entry_hash_input(entry))``.
    """
    if _entry_reader is None or not (_active if _active is not None else active()):
        return None
    if type(data) is not bytes or not data.startswith(_LEDGER_ENTRY_HEADERS):
        return None
    return _entry_reader.read_entry(data)


#: spec_version and seq (two zig-zag varints), then prev_hash's length prefix
_ENTRY_HEAD = re.compile(rb"[\x80-\xff]*[\x00-\x7f][\x80-\xff]*[\x00-\x7f]\x40")
_HASH_LENGTH = 0x40  # zig-zag 32: the one-byte length prefix of prev_hash and entry_hash


@functools.lru_cache(maxsize=4)
def _signature_tail(signature_size: int) -> bytes:
    """Union branch 1 and the length prefix of a signature of that size (built once per size:
    the verifiers read it for every entry)."""
    return SOME + write_long(signature_size)


def entry_signature_layout(raw: bytes, signature_size: int,
                           encoded_key_ids: Sequence[bytes]) -> tuple[int, int, int] | None:
    """Where a signed LedgerEntry without a per-entry timestamp token keeps its signature and
    entry hash, read from the bytes without decoding them: (the index of its ``key_id`` among
    ``encoded_key_ids``, as :func:`write_str` writes them; the signature's offset; the
    entry hash's offset). None for any record this does not read, which the caller then
    decodes. The caller must treat the result as valid only for exactly these bytes."""
    # such an entry ends with its signature as union branch 1, then the null branch of
    # timestamp_token; key_id is the string just before (schemas/LedgerEntry.avsc, field order)
    tail = _signature_tail(signature_size)
    sig_start = len(raw) - 1 - signature_size
    tail_start = sig_start - len(tail)
    if (tail_start < codec.HEADER_LEN or raw[-1] != 0 or not is_ledger_entry_header(raw)
            or not raw.endswith(tail, 0, sig_start)):
        return None
    for index, encoded in enumerate(encoded_key_ids):
        if raw.endswith(encoded, 0, tail_start):
            break
    else:
        return None
    head = _ENTRY_HEAD.match(raw, codec.HEADER_LEN, tail_start)
    if head is None or raw[head.end() + 32] != _HASH_LENGTH:
        return None
    return index, sig_start, head.end() + 33


def compiled() -> bool:
    """True when :func:`read_entry` has its compiled reader (``bench verifier`` reports it)."""
    return _entry_reader is not None


_LEN32 = write_long(32)  # the length prefix of every hash
_STRINGS: dict[str, bytes] = {}  # encoded topic names and key ids: a handful, repeated in every entry


def _cached_str(s: str) -> bytes:
    out = _STRINGS.get(s)
    if out is None:
        out = write_str(s)
        if len(_STRINGS) < 256:
            _STRINGS[s] = out
    return out


def _hash_bytes(b: bytes) -> bytes:
    return _LEN32 + b if len(b) == 32 else write_long(len(b)) + b


def encode_ledger_entry(entry: dict[str, Any], action_body: bytes | None = None) -> bytes:
    """``codec.encode("LedgerEntry", entry)``, byte for byte.

    ``action_body``: the canonical ActionEvent body (the single object after its 10-byte
    header) that ``entry["action"]`` was read from by :func:`read_action`; it is copied in
    as is. Without it (or after a schema change) this is ``codec.encode``.
    """
    if action_body is None or not active():
        return codec.encode("LedgerEntry", entry)
    if _entry_reader is not None:
        return _entry_reader.encode_entry(_LEDGER_ENTRY_HEADER, entry, action_body)
    return _encode_ledger_entry(entry, action_body)


def _encode_ledger_entry(entry: dict[str, Any], action_body: bytes) -> bytes:
    """:func:`encode_ledger_entry` without the compiled writer (and its reference in tests)."""
    source = entry["source"]
    links = entry["resolved_links"]
    if links:
        parts = [write_long(len(links))]
        for l in links:  # noqa: E741
            parts += (write_str(l["agent_id"]), write_str(l["event_id"]), write_str(l["status"]),
                      write_opt_long(l["seq"]), write_opt_bytes(l["entry_hash"]))
        parts.append(NULL)
        resolved = b"".join(parts)
    else:
        resolved = NULL
    signature, token = entry["signature"], entry["timestamp_token"]
    return b"".join((
        _LEDGER_ENTRY_HEADER, write_long(entry["spec_version"]), write_long(entry["seq"]),
        _hash_bytes(entry["prev_hash"]), _hash_bytes(entry["entry_hash"]),
        action_body,
        write_long(entry["received_at"]),
        _cached_str(source["topic"]), write_long(source["partition"]), write_long(source["offset"]),
        write_long(entry["agent_seq"]), _hash_bytes(entry["agent_prev_hash"]),
        resolved,
        _cached_str(entry["key_id"]),
        NULL if signature is None else SOME + write_long(len(signature)) + signature,
        NULL if token is None else SOME + write_long(len(token)) + token,
    ))
