"""Mutations of known-good inputs (bit flips, truncation, insertion, splicing), the usual
first moves of a coverage fuzzer, as a Hypothesis strategy."""
from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], keep: int = 0) -> bytes:
    """One of ``seeds`` with 1-4 mutations after its first ``keep`` bytes (a header to keep)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "cut", "insert", "delete", "splice"]))
        if len(data) <= keep:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(keep, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 16))]
        else:
            other = draw(st.sampled_from(seeds))
            j = draw(st.integers(0, len(other)))
            data[i:] = other[j:]
    return bytes(data)
