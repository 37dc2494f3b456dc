"""Step [3] at speed (core/verify/signatures.py) on the cases its mutation run showed
untested (docs/mutation.md). Verdicts are FIPS 204 ML-DSA-65 signatures made here over
docs/spec.md section 4's message (TAG_ENTRY_SIGNATURE || entry_hash); the pipeline's layout
is the one its docstrings define (chunks of PIPELINE_CHUNK, a quarter of that at both ends)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import pytest

from ledgerstream.core.mldsa import SIGNATURE_SIZE, PrivateKey
from ledgerstream.core.verify import Checker, CheckerConfig, SignaturePool, check_entries, check_raw_signatures
from ledgerstream.core.verify import signatures as verify_signatures
from ledgerstream.core.wire import avro_fast
from support.ledger_builder import LedgerBuilder, entry_bytes

pytestmark = pytest.mark.unit

KEY = PrivateKey.from_seed(bytes(range(32)))
OTHER = PrivateKey.from_seed(bytes(range(5, 37)))
TAG_ENTRY_SIGNATURE = b"ledgerstream/v1/entry-signature\x00"  # docs/spec.md, table of tags


def config() -> CheckerConfig:
    return CheckerConfig.from_keys([KEY.public_key(), OTHER.public_key()], link_grace_entries=50,
                                   link_grace_seconds=None)


@pytest.mark.parametrize("change", ["longer", "shorter"])
def test_a_verdict_on_a_signature_that_is_not_the_decoded_one_is_not_taken(change: str) -> None:
    """The decoded entry's signature is a valid signature plus one byte, or minus its last
    byte (3310 or 3308 bytes: not an ML-DSA-65 signature), and a crafted timestamp token ends
    with the valid signature laid out as a 3309-byte signature field (and the null byte a
    record ends with): the raw read finds the valid signature, which is not the decoded
    entry's signature, so its verdict must not be taken."""
    honest = LedgerBuilder(KEY).many(5)
    victim = honest[3]
    good = bytes(victim["signature"])
    assert len(good) == SIGNATURE_SIZE == 3309  # FIPS 204 ML-DSA-65
    assert KEY.public_key().verify_many([(good, TAG_ENTRY_SIGNATURE + bytes(victim["entry_hash"]))]) == [True]
    decoded = good + b"\x00" if change == "longer" else good[:-1]
    forged = dict(victim, signature=decoded, timestamp_token=avro_fast.write_str(victim["key_id"]) + b"\x02"
                  + avro_fast.write_long(SIGNATURE_SIZE) + good + b"\x00")
    batch = list(enumerate([entry_bytes(e) for e in honest[:4]] + [entry_bytes(forged), entry_bytes(honest[4])]))
    verdicts = check_raw_signatures(batch, config())
    assert verdicts[4] is True  # the raw read was fooled
    checker = Checker(config())
    found = checker.feed_entries(batch, None, verdicts) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("bad_signature", 3)]
    assert checker.position == 5


# --- SignaturePool ------------------------------------------------------------------------------

def checks(n: int, keys: Sequence[PrivateKey] = (KEY,), bad: Sequence[int] = ()) -> list[tuple[Any, bytes, bytes]]:
    """n (key, signature, message) checks, each key signing docs/spec.md section 4's message
    over its own 32-byte hash; the ones in ``bad`` carry another message."""
    out = []
    for i in range(n):
        key = keys[i % len(keys)]
        message = TAG_ENTRY_SIGNATURE + bytes([i]) * 32
        out.append((key.public_key(), key.sign(message), message if i not in bad else TAG_ENTRY_SIGNATURE + bytes(32)))
    return out


class CountingPool(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(2)
        self.tasks: list[int] = []

    def submit(self, fn, pairs, *args, **kwargs):  # type: ignore[override]
        self.tasks.append(len(pairs))
        return super().submit(fn, pairs, *args, **kwargs)


@pytest.fixture(scope="module")
def ten() -> list[tuple[Any, bytes, bytes]]:
    return checks(10, bad=(2, 9))


@pytest.mark.parametrize("workers, tasks", [(1, [10]), (2, [5, 5]), (3, [4, 4, 2]), (4, [3, 3, 3, 1]),
                                            (10, [1] * 10), (0, [10]), (-3, [10])])
def test_the_pool_splits_a_chunk_between_its_workers_and_keeps_the_order(ten, workers: int, tasks: list[int]) -> None:
    """``workers`` threads split each chunk between them (at least one); the verdicts come
    back in input order."""
    if not KEY.public_key().verify_many_releases_gil:
        pytest.skip("without a GIL-free backend the checks run on the caller")
    with CountingPool() as pool:
        assert SignaturePool(pool, workers).submit(ten)() == [i not in (2, 9) for i in range(10)]
        assert pool.tasks == tasks


def test_checks_of_different_keys_run_on_the_caller_with_their_own_keys() -> None:
    mixed = checks(6, keys=(KEY, OTHER), bad=(3,))
    with CountingPool() as pool:
        assert SignaturePool(pool, 2).submit(mixed)() == [True, True, True, False, True, True]
        assert pool.tasks == []
    swapped = [(OTHER.public_key() if k.key_id == KEY.public_key().key_id else KEY.public_key(), s, m)
               for k, s, m in mixed]
    assert SignaturePool(None).submit(swapped)() == [False] * 6


def test_nothing_to_check_gives_no_verdicts() -> None:
    with CountingPool() as pool:
        assert SignaturePool(pool, 2).submit([])() == []
        assert pool.tasks == []


# --- the pipeline's chunks ------------------------------------------------------------------------

class RecordingPool(SignaturePool):
    """Checks on the caller, recording how many signatures each submitted chunk holds."""

    def __init__(self) -> None:
        super().__init__(None)
        self.chunks: list[int] = []

    def submit(self, checks):  # type: ignore[override]
        self.chunks.append(len(checks))
        return super().submit(checks)


@pytest.fixture(scope="module")
def signed_run() -> list[tuple[int, bytes]]:
    return [(i, entry_bytes(e)) for i, e in enumerate(LedgerBuilder(KEY).many(70))]


@pytest.mark.parametrize("n", [1, 3, 4, 5, 24, 25, 40, 70])
def test_a_run_is_checked_in_order_in_chunks_with_quarter_chunks_at_both_ends(signed_run, n: int,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """check_entries' docstring and _chunks': chunks of PIPELINE_CHUNK, a quarter of that at
    both ends. With PIPELINE_CHUNK 16: the first chunk and the last are at most 4 long, none is
    longer than 16, they cover the run once, in order, and a long run has full chunks."""
    monkeypatch.setattr(verify_signatures, "PIPELINE_CHUNK", 16)
    recording = RecordingPool()
    out = list(check_entries(signed_run[:n], config(), recording))
    assert [c.offset for c in out] == list(range(n)) and all(c.rejection is None and c.signed for c in out)
    sizes = recording.chunks
    assert sum(sizes) == n and all(0 < s <= 16 for s in sizes)
    assert sizes[0] == min(n, 4) and sizes[-1] <= 4
    if n >= 40:
        assert 16 in sizes


def test_verdicts_taken_ahead_are_counted(signed_run) -> None:
    from ledgerstream.core.verify import Stats

    batch = signed_run[:10]
    verdicts = check_raw_signatures(batch, config())
    tally = Stats()
    out = list(check_entries(batch, config(), None, verdicts, tally))
    assert tally.signatures_checked_ahead == 10 and all(c.rejection is None for c in out)
    tally = Stats()
    list(check_entries(batch, config(), None, {k: v for k, v in verdicts.items() if k % 2}, tally))
    assert tally.signatures_checked_ahead == 5
    tally = Stats()
    list(check_entries(batch, config(), None, None, tally))
    assert tally.signatures_checked_ahead == 0


def test_the_switch_interval_for_pool_feeders_is_below_the_default_5_ms() -> None:
    """SWITCH_INTERVAL's reason to exist: at the interpreter's default 5 ms a pool thread waits
    for the feeding thread's slice; it must be a valid, shorter interval."""
    import sys

    assert 0 < verify_signatures.SWITCH_INTERVAL < 0.005
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(verify_signatures.SWITCH_INTERVAL)
    finally:
        sys.setswitchinterval(before)


def test_a_verdict_for_a_record_the_raw_read_cannot_read_is_not_taken() -> None:
    """check_entries' docstring: a verdict is taken only where the record's raw check equals
    the decoded entry's; a record the raw read declines (a per-entry timestamp token) has no
    raw check, so a verdict given for its offset (about other bytes) is not taken."""
    honest = LedgerBuilder(KEY).many(4)
    good = bytes(honest[2]["signature"])
    honest[2] = dict(honest[2], signature=bytes([good[0] ^ 1]) + good[1:], timestamp_token=b"\x30\x03\x02\x01\x00")
    batch = [(i, entry_bytes(e)) for i, e in enumerate(honest)]
    verdicts = {0: True, 1: True, 2: True, 3: True}
    checker = Checker(config())
    found = checker.feed_entries(batch, None, verdicts) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("bad_signature", 2), ("gap", 2)]


def test_verdicts_without_a_tally_are_taken_all_the_same(signed_run) -> None:
    batch = signed_run[:6]
    verdicts = check_raw_signatures(batch, config())
    out = list(check_entries(batch, config(), None, verdicts))
    assert [c.offset for c in out] == list(range(6)) and all(c.rejection is None and c.signed for c in out)
