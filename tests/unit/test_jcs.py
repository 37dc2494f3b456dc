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
