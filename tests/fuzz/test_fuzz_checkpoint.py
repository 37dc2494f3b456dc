"""Fuzz the checkpoint note-body parser: any bytes either raise ValueError or parse to fields
whose canonical rendering is exactly the input (docs/spec.md section 6)."""
from __future__ import annotations

import pytest
import fuzz_profile  # noqa: F401  (the Hypothesis profile: bounded in CI, LEDGERSTREAM_FUZZ_EXAMPLES)
from hypothesis import given
from hypothesis import strategies as st

from fuzz_mutations import mutated
from ledgerstream.core import records

pytestmark = pytest.mark.unit

SEEDS = [records.checkpoint_body(origin, size, bytes([size % 256]) * 32, bytes(32), created)
         for origin, size, created in (("ledgerstream/dev", 0, 0), ("o", 1, 1_765_000_000_000_000),
                                       ("x.example/log", 2 ** 40, 9), ("é😀", 7, 12))]
_LINES = st.lists(st.sampled_from(["o", "0", "01", "18", "\u0661", "AAAA", "=" * 4, "chain-head " + "00" * 32,
                                   "time 1", "time \u0661", " ", ""]), max_size=7)


@given(st.one_of(st.binary(max_size=300), mutated(SEEDS), _LINES.map(lambda ls: "\n".join(ls).encode())))
def test_parse_raises_value_error_or_round_trips(body: bytes) -> None:
    try:
        parsed = records.parse_checkpoint_body(body)
    except ValueError:
        return
    assert records.checkpoint_body(**parsed) == body
    assert len(parsed["root_hash"]) == len(parsed["chain_head"]) == 32
