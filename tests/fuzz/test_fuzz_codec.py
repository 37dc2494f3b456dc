"""Fuzz the Avro codec and the fast readers: on any bytes, codec.decode raises only
DecodeError, and each fast reader returns None or exactly what the reference decode returns."""
from __future__ import annotations

import json
import random
from typing import Any

import pytest
import rfc8785
import fuzz_profile  # noqa: F401  (the Hypothesis profile: bounded in CI, LEDGERSTREAM_FUZZ_EXAMPLES)
from hypothesis import given
from hypothesis import strategies as st

from fuzz_mutations import mutated
from ledgerstream.core import records
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.errors import DecodeError
from support.random_records import ALPHABET, PLAIN_ALPHABET, json_value, plain_action, random_action, random_entry

pytestmark = pytest.mark.unit

_REG = codec.registry()
_HEADERS = [codec.MAGIC + _REG.schema(name).fingerprint for name in ("ActionEvent", "LedgerEntry", "Checkpoint")]


def _seeds() -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(19)
    actions, entries = [], []
    for i in range(40):
        alphabet = PLAIN_ALPHABET if i % 2 else ALPHABET
        action = random_action(rng, alphabet) if i % 4 else plain_action(rng)  # some the signer's fast path takes
        actions.append(codec.encode("ActionEvent", action))
        entries.append(codec.encode("LedgerEntry", random_entry(rng, action, alphabet)))
    return actions, entries


ACTIONS, ENTRIES = _seeds()
_ANY = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda h, b: h + b, st.sampled_from(_HEADERS), st.binary(max_size=600)),
    mutated(ACTIONS + ENTRIES, keep=10),
    mutated(ACTIONS + ENTRIES),
)


def _reference(data: bytes, name: str) -> dict[str, Any] | None:
    try:
        return codec.decode(data, expect=name)[1]
    except DecodeError:
        return None


@given(_ANY)
def test_codec_decode_raises_only_decode_error(data: bytes) -> None:
    try:
        name, record = codec.decode(data)
    except DecodeError:
        return
    assert codec.encode(name, record) is not None  # a decoded record re-encodes


@given(_ANY)
def test_fast_action_reader_is_none_or_the_reference(data: bytes) -> None:
    fast = avro_fast.read_action(data)
    if fast is not None:
        assert fast == _reference(data, "ActionEvent")


@pytest.mark.skipif(not avro_fast.compiled(), reason="the compiled entry reader is not built")
@given(_ANY)
def test_compiled_entry_reader_is_none_or_the_reference(data: bytes) -> None:
    fast = avro_fast.read_entry(data)
    if fast is not None:
        entry, preimage = fast
        reference = _reference(data, "LedgerEntry")
        assert entry == reference
        assert preimage == records.entry_hash_input(reference)


def test_some_seeds_are_taken_by_the_compiled_reader() -> None:
    """Guards the target itself: if no seed were taken, mutants would never reach the C reader."""
    if not avro_fast.compiled():
        pytest.skip("the compiled entry reader is not built")
    assert sum(avro_fast.read_entry(e) is not None for e in ENTRIES) >= 10


@pytest.mark.skipif(not avro_fast.compiled(), reason="the compiled entry reader is not built")
@given(_ANY)
def test_compiled_valid_action_reader_is_none_or_a_valid_reference_record(data: bytes) -> None:
    """The signer's fast path (D44): whatever it takes decodes as codec does, passes
    records.validate_action (but for the payload commitment, which its caller checks) and
    comes with the action's JCS text."""
    fast = avro_fast.read_valid_action(data)
    if fast is None:
        return
    action, text = fast
    assert action == _reference(data, "ActionEvent")
    assert text == records.jcs_without_floats(records.action_hash_view(action))
    if action["payload"] is not None:
        action = {**action, "payload_hash": records.payload_commitment(action["payload_salt"], action["payload"])}
    records.validate_action(action)  # raises if the fast path took an invalid action


@pytest.mark.skipif(not avro_fast.compiled(), reason="the compiled entry reader is not built")
@given(_ANY)
def test_compiled_sealable_action_reader_is_none_or_a_valid_committed_reference_record(data: bytes) -> None:
    """The sealed path (D54): whatever it takes decodes as codec does, passes
    records.validate_action with its payload commitment, and comes with the reference's fields,
    JCS text and links."""
    fast = avro_fast.read_sealable_action(data)
    if fast is None:
        return
    action = _reference(data, "ActionEvent")
    assert action is not None
    records.validate_action(action)  # raises if the sealed path took an invalid action
    assert fast == (action["event_id"], action["agent_id"], action["action_type"], action["payload_hash"],
                    records.jcs_without_floats(records.action_hash_view(action)),
                    tuple((link["agent_id"], link["event_id"]) for link in action["links"]))


_JSON_SEEDS = [rfc8785.dumps(json_value(random.Random(i))) for i in range(40)]


@pytest.mark.skipif(not avro_fast.compiled(), reason="the compiled entry reader is not built")
@given(st.one_of(st.binary(max_size=300), st.sampled_from(_JSON_SEEDS), mutated(_JSON_SEEDS)))
def test_compiled_canonical_json_check_is_false_or_rfc8785(data: bytes) -> None:
    from ledgerstream.core.wire import _entry_reader

    if _entry_reader.is_canonical_json(data):
        assert rfc8785.dumps(json.loads(data)) == data


def test_some_seeds_are_taken_by_the_compiled_action_reader() -> None:
    """Guards the three targets above: mutants of these seeds reach the C code's deeper paths."""
    if not avro_fast.compiled():
        pytest.skip("the compiled entry reader is not built")
    from ledgerstream.core.wire import _entry_reader

    assert sum(avro_fast.read_valid_action(a) is not None for a in ACTIONS) >= 5  # of the 10 plain ones
    assert sum(avro_fast.read_sealable_action(a) is not None for a in ACTIONS) >= 5  # the plain ones
    assert sum(_entry_reader.is_canonical_json(j) for j in _JSON_SEEDS) >= 20
