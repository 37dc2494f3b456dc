"""ledgerstream.core.records: the cases that mutation testing (docs/mutation.md) found unpinned.

Expected values come from docs/spec.md's byte-exact definitions computed here with hashlib,
base64 and plain string formatting, never from the module itself.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from ledgerstream.core import records

pytestmark = pytest.mark.unit

TAG_PAYLOAD = b"ledgerstream/v1/payload\x00"  # docs/spec.md section 1 (domain tags)
SALT = bytes(range(32))
PAYLOAD = b'{"q":"x"}'  # JCS of {"q": "x"}
MAX_SAFE = 9007199254740991  # 2**53 - 1, spec section 2: integers within +-2**53
ROOT = hashlib.sha256(b"root").digest()
HEAD = hashlib.sha256(b"head").digest()


def _action(**changes: Any) -> dict[str, Any]:
    """A valid ActionEvent built by hand: the commitment is spec section 2's formula."""
    action = {
        "event_id": "e-1", "agent_id": "agent-a", "session_id": None, "action_type": "tool:search",
        "payload": PAYLOAD, "payload_salt": SALT,
        "payload_hash": hashlib.sha256(TAG_PAYLOAD + SALT + PAYLOAD).digest(),
        "occurred_at": 1_700_000_000_000_000, "links": [], "policy": None, "approvals": [], "trace": None,
        "producer": {"library": "tests", "version": "0", "host": "h", "pid": 1, "adapter": None},
        "offline": False,
    }
    action.update(changes)
    return action


def _approval(approved_at: int) -> dict[str, Any]:
    return {"request_id": "r-1", "approver_id": "alice", "key_id": "ab" * 32, "decision": "approve",
            "approved_at": approved_at, "signature": b"s"}


# --- validate_action: integer ranges ----------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, int(str(MAX_SAFE))])
def test_approved_at_up_to_2_pow_53_minus_1_is_accepted(value: int) -> None:
    records.validate_action(_action(approvals=[_approval(value)]))


@pytest.mark.parametrize("value", [-1, MAX_SAFE + 1, 2**63])
def test_approved_at_outside_0_to_2_pow_53_minus_1_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="approved_at"):
        records.validate_action(_action(approvals=[_approval(value)]))


@pytest.mark.parametrize("value", [0, int(str(MAX_SAFE))])
def test_occurred_at_from_0_to_2_pow_53_minus_1_is_accepted(value: int) -> None:
    records.validate_action(_action(occurred_at=value))


@pytest.mark.parametrize("value", [-1, MAX_SAFE + 1])
def test_occurred_at_below_0_or_from_2_pow_53_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="occurred_at"):
        records.validate_action(_action(occurred_at=value))


# --- validate_action: payload commitment -------------------------------------------------

@pytest.mark.parametrize("stored", [bytes(32), b"\xff" * 32], ids=["below", "above"])
def test_a_payload_hash_that_does_not_commit_to_payload_and_salt_is_refused(stored: bytes) -> None:
    """Spec section 2: SHA-256(TAG_PAYLOAD || salt || payload) must equal payload_hash; a
    hash below the commitment and one above it are both wrong."""
    assert hashlib.sha256(TAG_PAYLOAD + SALT + PAYLOAD).digest() not in (bytes(32), b"\xff" * 32)
    with pytest.raises(ValueError, match="commit"):
        records.validate_action(_action(payload_hash=stored))


# --- checkpoint body ---------------------------------------------------------------------



@pytest.mark.parametrize("origin", ["", "ledgerstream/dev\n", "a\nb"])
def test_checkpoint_origin_must_be_one_non_empty_line(origin: str) -> None:
    """Spec section 6: the first line is <origin>, "one line, non-empty"."""
    with pytest.raises(ValueError, match="origin"):
        records.checkpoint_body(origin, 1, ROOT, HEAD, 5)


# --- validate_identifier: the optional flag --------------------------------------------------

def test_optional_is_keyword_only_so_no_positional_argument_makes_an_id_optional() -> None:
    """Spec "Identifiers": event_id, agent_id, ... are required non-empty strings; only
    session_id is optional, and only a caller that says optional=True by name gets None
    through. A stray third positional argument must not."""
    with pytest.raises(ValueError, match="agent_id"):
        records.validate_identifier("agent_id", None)
    records.validate_identifier("session_id", None, optional=True)
    with pytest.raises(TypeError):
        records.validate_identifier("agent_id", None, True)  # type: ignore[misc]


@pytest.mark.parametrize("length", [1, 255, 256])
def test_ids_of_up_to_256_characters_are_accepted(length: int) -> None:
    """Spec "Identifiers": non-empty strings of at most 256 characters."""
    records.validate_identifier("agent_id", "a" * length)


# --- checkpoint body: only the canonical rendering parses -----------------------------------

def _body(origin: str = "ledgerstream/dev", size: str = "3", root: str | None = None,
          head: str | None = None, time: str = "1700000000000000") -> bytes:
    """Spec section 6, line by line."""
    root = base64.b64encode(ROOT).decode() if root is None else root
    head = HEAD.hex() if head is None else head
    return f"{origin}\n{size}\n{root}\nchain-head {head}\ntime {time}\n".encode()


def test_the_canonical_checkpoint_body_parses_to_its_fields() -> None:
    assert records.parse_checkpoint_body(_body()) == {
        "origin": "ledgerstream/dev", "tree_size": 3, "root_hash": ROOT, "chain_head": HEAD,
        "created_at": 1700000000000000}


def _other_spare_bits(b64: str) -> str:
    """The same 32 bytes in base64 with non-zero padding bits: decodes alike, is not canonical."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(b64[-2])
    other = b64[:-2] + alphabet[last ^ 1] + "="
    assert base64.b64decode(other, validate=True) == base64.b64decode(b64)
    return other


@pytest.mark.parametrize("body", [
    _body(head=HEAD.hex().upper()),
    _body(time="01700000000000000"),
    _body(root=_other_spare_bits(base64.b64encode(ROOT).decode())),
], ids=["uppercase chain-head hex", "time with a leading zero", "base64 with non-zero spare bits"])
def test_a_checkpoint_body_that_is_not_the_canonical_rendering_is_refused(body: bytes) -> None:
    """Each of these decodes to the same fields as _body(), but is not the exact text spec
    section 6 prescribes, so it must not be taken as that checkpoint."""
    assert body != _body()
    with pytest.raises(ValueError):
        records.parse_checkpoint_body(body)


def test_the_empty_tree_checkpoint_parses() -> None:
    """Spec section 6: tree size 0 is "0" (no leading zeros, but zero itself), the root is
    MTH({}) = SHA-256("") and the chain head 64 zeros."""
    empty = hashlib.sha256(b"").digest()
    body = _body(size="0", root=base64.b64encode(empty).decode(), head="0" * 64)
    assert records.parse_checkpoint_body(body) == {
        "origin": "ledgerstream/dev", "tree_size": 0, "root_hash": empty, "chain_head": bytes(32),
        "created_at": 1700000000000000}


@pytest.mark.parametrize("length", [31, 33])
def test_a_checkpoint_root_that_is_not_32_bytes_is_refused(length: int) -> None:
    """Spec section 6: the third line is base64 of the 32-byte RFC 9162 root."""
    with pytest.raises(ValueError):
        records.parse_checkpoint_body(_body(root=base64.b64encode(bytes(length)).decode()))


# --- hash-only actions and the spec version ---------------------------------------------------

@pytest.mark.parametrize("length", [0, 31, 33])
def test_a_hash_only_action_needs_a_32_byte_payload_hash(length: int) -> None:
    """Spec section 2: payload_hash is the SHA-256 commitment, also when the agent sends only
    the hash (payload and salt stay with the agent)."""
    records.validate_action(_action(payload=None, payload_salt=None, payload_hash=bytes(32)))
    with pytest.raises(ValueError, match="payload_hash"):
        records.validate_action(_action(payload=None, payload_salt=None, payload_hash=bytes(length)))


def test_entries_are_spec_version_1() -> None:
    """docs/spec.md is "version 1" and V's "v" is the record's spec_version "(1)": the
    version the signer stamps on entries and the one an entry without the field hashes as."""
    assert records.SPEC_VERSION == 1
    entry = {"seq": 0, "prev_hash": bytes(32), "received_at": 1, "source": {"topic": "t", "partition": 0, "offset": 0},
             "agent_seq": 0, "agent_prev_hash": bytes(32), "resolved_links": [], "key_id": "ab" * 32,
             "action": _action()}
    assert records.entry_hash_view(entry)["v"] == 1


# --- second run (records, 2026-12-05): the survivors below ------------------------------------

def test_a_salt_without_a_payload_is_refused() -> None:
    """Spec section 2: payload and payload_salt are present together or both absent (an
    erased payload drops both). Killed: `!=` → `<` (l. 389), which let a lone salt through."""
    with pytest.raises(ValueError, match="present together"):
        records.validate_action(_action(payload=None))
    with pytest.raises(ValueError, match="present together"):
        records.validate_action(_action(payload_salt=None))


@pytest.mark.parametrize("length", [0, 31])
def test_the_entry_signing_message_needs_a_32_byte_hash(length: int) -> None:
    """Spec section 4: the message is TAG_ENTRY_SIGNATURE || entry_hash, a SHA-256 hash."""
    with pytest.raises(ValueError, match="32 bytes"):
        records.entry_signing_message(bytes(length))
    h = hashlib.sha256(b"e").digest()
    assert records.entry_signing_message(h) == b"ledgerstream/v1/entry-signature\x00" + h


def test_an_action_type_of_exactly_256_characters_is_accepted() -> None:
    """Spec "Identifiers": action_type is at most 256 characters. Killed: `>` → `>=` (l. 314)."""
    exact = "a:" + "b" * 254
    assert len(exact) == 256
    records.validate_action_type(exact)
    with pytest.raises(ValueError, match="longer than 256"):
        records.validate_action_type(exact + "c")


def test_jsonable_turns_every_byte_string_into_hex_and_keeps_the_rest() -> None:
    value = {"a": [b"\x01\xff", {"b": bytearray(b"\x10")}], "n": 5, "s": "x", "none": None, "f": 1.5}
    assert records.jsonable(value) == {"a": ["01ff", {"b": "10"}], "n": 5, "s": "x", "none": None, "f": 1.5}


@pytest.mark.parametrize("size", ["abc", "-3", "+3", " 3"])
def test_a_tree_size_line_that_is_not_digits_is_refused_as_such(size: str) -> None:
    """The error names the tree size line (a user reads it), whether or not the rest of the
    body would have caught the problem later. Killed: `or` → `and` (l. 244)."""
    with pytest.raises(ValueError, match="tree size"):
        records.parse_checkpoint_body(_body(size=size))


class _Odd(Exception):
    """An error type rfc8785 does not raise today (its errors are ValueErrors)."""


@pytest.mark.parametrize("raised,expected", [(TypeError("t"), TypeError), (ValueError("v"), ValueError),
                                             (_Odd("o"), TypeError), (RecursionError("r"), TypeError)])
def test_canonical_json_raises_only_type_or_value_errors(monkeypatch: pytest.MonkeyPatch, raised: Exception,
                                                         expected: type) -> None:
    """Its contract: TypeError or ValueError for non-JSON input, whatever the JCS library
    raises (fault injected into rfc8785.dumps); its own TypeError and ValueError pass through
    unchanged. Killed: each exception type of `except (TypeError, ValueError)` (l. 55)."""
    def dumps(value: Any) -> bytes:
        raise raised

    monkeypatch.setattr(records.rfc8785, "dumps", dumps)
    with pytest.raises(expected) as err:
        records.canonical_json({"a": 1})
    if isinstance(raised, (TypeError, ValueError)):
        assert err.value is raised


def test_a_payload_the_jcs_library_chokes_on_is_refused_with_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile payload must never crash the signer: whatever rfc8785 raises on the slow
    path (a float sends it there) becomes ValueError. Killed: `except Exception` (l. 372)."""
    def dumps(value: Any) -> bytes:
        raise _Odd("unexpected")

    monkeypatch.setattr(records.rfc8785, "dumps", dumps)
    with pytest.raises(ValueError, match="not canonicalisable"):
        records.validate_canonical_payload(b'{"a":1.5}')
