"""RFC 8785 canonicalisation, checked with the RFC's own examples."""
from __future__ import annotations

import json
import struct

import pytest

from ledgerstream.core import records

pytestmark = pytest.mark.unit


def test_rfc8785_section_3_2_2_example() -> None:
    text = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
            '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
            '"literals": [null, true, false]}')
    want = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert records.canonical_json(json.loads(text)) == want.encode("utf-8")


def test_rfc8785_section_3_2_3_sorting() -> None:
    text = ('{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
            '"1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
            '"\\u00f6": "Latin Small Letter O With Diaeresis"}')
    out = json.loads(records.canonical_json(json.loads(text)))
    assert list(out.values()) == ["Carriage Return", "One", "Control", "Latin Small Letter O With Diaeresis",
                                  "Euro Sign", "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh"]


@pytest.mark.parametrize("ieee_hex,want", [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
])
def test_rfc8785_appendix_b_numbers(ieee_hex: str, want: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(ieee_hex))[0]
    assert records.canonical_json(value).decode() == want


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1, 2}, object()])
def test_non_json_values_are_rejected(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        records.canonical_json({"x": bad})


def _random_text(rng) -> str:
    pools = ["abc", "\x00\x01\x1f\x7f", "\"\\/\b\f\n\r\t", "\u00e9\u20ac\u2028\u2029", "\ud7ff\ue000\uffff",
             "\U0001F600\U00010000", "<>&'"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 12)))


def test_fast_entry_view_encoder_equals_rfc8785() -> None:
    """The float-free fast path used for entry hashes must be byte-identical to JCS."""
    import random

    import rfc8785

    rng = random.Random(8785)

    def value(depth: int):
        kind = rng.randint(0, 6 if depth < 3 else 3)
        if kind == 0:
            return _random_text(rng)
        if kind == 1:
            return rng.choice([0, 1, -1, 2**53 - 1, -(2**53 - 1), rng.randint(-10**15, 10**15)])
        if kind == 2:
            return rng.choice([True, False])
        if kind == 3:
            return None
        if kind in (4, 5):
            return {rng.choice(["a", "b", "seq", "agent_id", "z", "A", "_"]) + str(i): value(depth + 1)
                    for i in range(rng.randint(0, 4))}
        return [value(depth + 1) for _ in range(rng.randint(0, 4))]

    for _ in range(3000):
        v = value(0)
        assert records.jcs_without_floats(v) == rfc8785.dumps(v), v


def test_out_of_range_times_are_rejected() -> None:
    from tests.support.actions import make_action

    action = make_action()
    action["occurred_at"] = 2**53
    with pytest.raises(ValueError, match="occurred_at"):
        records.validate_action(action)
