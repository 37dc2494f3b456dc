"""Fuzz what the signer reads from its signer-state topic on start: SignerSnapshot and
SignerDedupChunk records (docs/spec.md section 11). Any bytes, any key, any record order
either give a snapshot fit to adopt (only the genuine one) or a SnapshotError with a reason;
nothing else escapes, so a bad record costs a fallback, never a crash."""
from __future__ import annotations

import pytest
import fuzz_profile  # noqa: F401  (the Hypothesis profile: bounded in CI, LEDGERSTREAM_FUZZ_EXAMPLES)
from hypothesis import given
from hypothesis import strategies as st

from fuzz_mutations import mutated
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.wire import codec
from ledgerstream.signer_worker import snapshots
from ledgerstream.signer_worker.sequencer import Sequencer, Source
from ledgerstream.signer_worker.state import LedgerState
from support.actions import make_action

pytestmark = pytest.mark.unit

KEY = PrivateKey.generate()
ORIGIN = "ledgerstream/dev"
_STATE = LedgerState(100)
_SEQ = Sequencer(_STATE, KEY)
RAWS = [Sequencer.encode(_SEQ.process(codec.encode("ActionEvent", make_action(agent_id=f"a{i % 2}", payload={"i": i})),
                                      Source("t.actions", 0, i))) for i in range(6)]
_WRITER = snapshots.SnapshotWriter(1, 30.0, 100)
_PENDING = _WRITER.capture(_STATE, ORIGIN, KEY.public_key().key_id, {})
RECORDS = _PENDING.chunk_records() + _WRITER.finish(_PENDING, 5, 0, KEY, 1)
SNAPSHOT = RECORDS[-1][1]
CHUNK_KEY, CHUNK = RECORDS[0]
REASONS = {"undecodable", "unknown_key", "bad_signature", "other_origin", "invalid", "head_missing", "head_mismatch",
           "chunk_missing", "chunk_altered", "chunk_invalid"}


def _judge(records: list[tuple[int, bytes | None, bytes | None]]) -> list[str]:
    store = snapshots.read_store(records)
    verdicts = []
    for cand in store.candidates:
        try:
            snapshots.check(cand, store.chunks, KEY.public_key(), ORIGIN,
                            lambda off: RAWS[off] if 0 <= off < len(RAWS) else None)
        except snapshots.SnapshotError as exc:
            assert exc.reason in REASONS
            verdicts.append(exc.reason)
        else:
            assert cand.raw == SNAPSHOT, "a snapshot other than the genuine one was adopted"
            verdicts.append("adopted")
    return verdicts


def test_the_genuine_snapshot_is_adopted() -> None:
    assert _judge([(0, CHUNK_KEY, CHUNK), (1, b"snapshot/0", SNAPSHOT)]) == ["adopted"]


@given(mutated([SNAPSHOT]))
def test_mutated_snapshots_are_refused_with_a_reason(data: bytes) -> None:
    verdicts = _judge([(0, CHUNK_KEY, CHUNK), (1, b"snapshot/0", data)])
    assert verdicts == ["adopted"] if data == SNAPSHOT else verdicts[0] in REASONS


@given(st.one_of(mutated([CHUNK]), st.binary(max_size=300)))
def test_mutated_chunks_are_refused_with_a_reason(data: bytes) -> None:
    verdicts = _judge([(0, CHUNK_KEY, data), (1, b"snapshot/0", SNAPSHOT)])
    assert verdicts == (["adopted"] if data == CHUNK else ["chunk_altered"])
    count = _PENDING.chunks[0][0].count
    try:
        snapshots.unpack_chunk(data, count)
    except snapshots.SnapshotError as exc:
        assert exc.reason == "chunk_invalid"


@given(st.lists(st.tuples(st.sampled_from([b"snapshot/0", b"snapshot/1", CHUNK_KEY, b"dedup/x", b"", None]),
                          st.one_of(st.none(), st.binary(max_size=200), st.sampled_from([SNAPSHOT, CHUNK]))),
                max_size=8))
def test_any_sequence_of_records_is_judged_without_crashing(records: list) -> None:
    verdicts = _judge([(i, key, value) for i, (key, value) in enumerate(records)])
    latest: dict[bytes | None, bytes | None] = {}
    for key, value in records:  # what compaction keeps: the last value per key
        latest[key or b""] = value
    # adopted exactly when the genuine snapshot and its chunk are what the topic holds (the
    # genuine snapshot may sit under both slot keys: each is then adopted, _judge checks the bytes)
    genuine = latest.get(CHUNK_KEY) == CHUNK and SNAPSHOT in (latest.get(b"snapshot/0"), latest.get(b"snapshot/1"))
    assert ("adopted" in verdicts) == genuine
