"""The producer's two fast paths against their references, on varied random inputs:
RFC 8785 payload bytes (vs the rfc8785 package) and ActionEvent Avro bytes (vs codec)."""
from __future__ import annotations

import random

import pytest
import rfc8785

from ledgerstream.core.wire import codec
from ledgerstream.producers.canonical import canonical_payload
from ledgerstream.producers.context import Link
from ledgerstream.core.wire.action_writer import ActionEventWriter

pytestmark = pytest.mark.unit

ALPHABET = "aZ09 _-:\"\\/\b\f\n\r\t\x00\x1f\x7fé€\u2028\ud7ff\ue000\uffff😀\U0010ffff"


def text(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, n)))


def value(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "bool", "null", "float", "big"] + (["dict", "list"] * 2 if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return text(rng)
    if kind == "int":
        return rng.choice([0, -1, 1, 2**53 - 1, -(2**53 - 1), rng.randint(-10**9, 10**9)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "float":
        return rng.choice([0.5, -1e-7, 1e21, 3.0, 333333333.33333329, 1e-27, rng.random()])
    if kind == "big":
        return rng.choice([2**53, -(2**53), 10**30])
    if kind == "list":
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {text(rng, 6): value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def reference(v) -> bytes | type:
    try:
        return rfc8785.dumps(v)
    except Exception:
        return TypeError


def test_canonical_payload_matches_rfc8785():
    rng = random.Random(8785)
    checked = 0
    for _ in range(3000):
        payload = {text(rng, 6): value(rng) for _ in range(rng.randint(0, 6))}
        want = reference(payload)
        if want is TypeError:
            with pytest.raises(TypeError):
                canonical_payload(payload)
        else:
            assert canonical_payload(payload) == want, payload
            checked += 1
    assert checked > 1000


@pytest.mark.parametrize("payload", [{"\ue000": 1, "\U0001f600": 2}, {"k": "\ud800"}, {"n": 2**53}, {"f": 1.0},
                                     {"t": (1, 2)}, {"b": True, "i": 1}])
def test_canonical_payload_edge_cases(payload):
    want = reference(payload)
    if want is TypeError:
        with pytest.raises(TypeError):
            canonical_payload(payload)
    else:
        assert canonical_payload(payload) == want


def test_wire_writer_is_byte_identical_to_codec():
    rng = random.Random(2)
    meta = {"library": "ledgerstream", "version": "1.2.3", "host": text(rng) or "h", "pid": 4242, "adapter": None}
    writer = ActionEventWriter("agent-é", meta)
    assert writer.fast, "the shipped ActionEvent schema is the one the fast writer implements"
    for _ in range(500):
        args = (text(rng, 40), rng.choice([None, text(rng)]), text(rng) or "x",
                rng.choice([None, rng.randbytes(rng.randint(0, 300))]), rng.choice([None, rng.randbytes(32)]),
                rng.randbytes(32), rng.choice([0, 63, 64, -65, 2**62, -(2**63), 2**63 - 1]),
                tuple(Link(text(rng) or "a", text(rng) or "e", text(rng) or "r") for _ in range(rng.randint(0, 3))),
                rng.choice([None, {"decision": text(rng), "rule": rng.choice([None, text(rng)]),
                                   "reason": rng.choice([None, text(rng)])}]),
                [{"request_id": text(rng), "approver_id": text(rng), "key_id": text(rng), "decision": text(rng),
                  "approved_at": rng.randint(-2**63, 2**63 - 1), "signature": rng.randbytes(rng.randint(0, 3309))}
                 for _ in range(rng.randint(0, 2))],
                rng.choice([None, (text(rng), text(rng), rng.choice([None, text(rng)]))]), rng.random() < 0.5)
        fast = writer.encode(*args)
        writer.fast = False
        slow = writer.encode(*args)
        writer.fast = True
        assert fast == slow
        assert codec.decode(fast, expect="ActionEvent")[1]["agent_id"] == "agent-é"
