"""Step [3] at speed: signatures checked in batches, ahead of the checker or on other threads,
with verdicts that are used only for the exact bytes they were made about."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from typing import Callable, Iterator, Mapping, Sequence

from ledgerstream.core import records
from ledgerstream.core.wire import avro_fast
from ledgerstream.core.mldsa import SIGNATURE_SIZE, PublicKey
from ledgerstream.core.verify.entries import CheckedEntry, SignatureCheck, precheck_entry, settle_signature
from ledgerstream.core.verify.findings import Stats
from ledgerstream.core.verify.trust import CheckerConfig

class SignaturePool:
    """Checks step [3]'s signatures on background threads while the caller goes on.

    With liboqs and the shim (``PublicKey.verify_many_releases_gil``) a whole chunk of
    signatures is checked in one foreign call that holds no GIL, so one thread verifies
    chunk *k* while the feeding thread decodes and re-hashes chunk *k + 1* and integrates
    chunk *k - 1*: on two cores the signature nearly disappears from the time per entry.
    Without it (pyca), or without a ``pool``, checks run at once on the calling thread.
    ``workers`` threads of the pool split each chunk between them.
    """

    def __init__(self, pool: Executor | None, workers: int = 1) -> None:
        self._pool = pool
        self._workers = max(1, workers)

    def submit(self, checks: Sequence[SignatureCheck]) -> Callable[[], list[bool]]:
        """Start checking; the returned function waits for the verdicts, in input order."""
        if not checks:
            return list
        key = checks[0][0]
        if self._pool is None or not key.verify_many_releases_gil or any(c[0] is not key for c in checks):
            verdicts = [k.verify_many([(sig, message)])[0] for k, sig, message in checks]
            return lambda: verdicts
        pairs = [(sig, message) for _, sig, message in checks]
        size = -(-len(pairs) // self._workers)
        futures = [self._pool.submit(key.verify_many, pairs[i:i + size]) for i in range(0, len(pairs), size)]
        return lambda: [ok for future in futures for ok in future.result()]


def raw_signature_check(raw: bytes, config: CheckerConfig) -> SignatureCheck | None:
    """The check :func:`precheck_entry` would hand over for ``raw``, read from the bytes
    without decoding them (a few µs against ~15 for a decode), so that another process can
    check a batch's signatures before the checker reaches it (the verifier worker does).

    Reads ``entry_hash`` (the 4th field, after two varints and the 32-byte ``prev_hash``) and,
    at the end of the record, a trusted ``key_id`` and the signature. None when the record
    is not laid out so (another schema, a per-entry timestamp token, corrupt bytes): the
    checker then checks the decoded entry itself. It may be fooled by crafted bytes, which
    is harmless: :func:`check_entries` uses a verdict only when this check equals the one
    made from the decoded entry."""
    layout = _signature_layout(raw, config)
    if layout is None:
        return None
    key, sig_at, hash_at = layout
    return key, raw[sig_at:-1], records.entry_signing_message(raw[hash_at:hash_at + 32])


def _signature_layout(raw: bytes, config: CheckerConfig) -> tuple[PublicKey, int, int] | None:
    """Where :func:`raw_signature_check` reads: the key, the signature's and entry_hash's offsets."""
    encoded, keys = config.encoded_key_ids
    layout = avro_fast.entry_signature_layout(raw, SIGNATURE_SIZE, encoded)
    if layout is None:
        return None
    key_index, sig_at, hash_at = layout
    return keys[key_index], sig_at, hash_at


def _reads_as(raw: bytes, check: SignatureCheck, config: CheckerConfig) -> bool:
    """``raw_signature_check(raw, config) == check``, without copying the signature out."""
    layout = _signature_layout(raw, config)
    if layout is None:
        return False
    key, sig_at, hash_at = layout
    want_key, signature, message = check
    return (key == want_key and len(signature) == SIGNATURE_SIZE and raw.startswith(signature, sig_at)
            and records.entry_signing_message(raw[hash_at:hash_at + 32]) == message)


def check_raw_signatures(batch: Sequence[tuple[int, bytes]], config: CheckerConfig) -> dict[int, bool]:
    """Verdicts, by offset, for the signatures of the records :func:`raw_signature_check`
    reads: one ``verify_many`` call per key (without the GIL on liboqs with the shim). The
    signatures go to it as views of the records (each would be copied twice otherwise)."""
    by_key: dict[str, list[tuple[int, memoryview, bytes]]] = {}
    for offset, raw in batch:
        layout = _signature_layout(raw, config)
        if layout is not None:
            key, sig_at, hash_at = layout
            by_key.setdefault(key.key_id, []).append(
                (offset, memoryview(raw)[sig_at:-1], records.entry_signing_message(raw[hash_at:hash_at + 32])))
    verdicts: dict[int, bool] = {}
    for key_id, checks in by_key.items():
        valid = config.trusted_keys[key_id].verify_many([(sig, message) for _, sig, message in checks])
        verdicts.update(zip((offset for offset, _, _ in checks), valid))
    return verdicts


#: entries pre-checked ahead of integration while their signatures are checked in the background
PIPELINE_CHUNK = 128
#: the interpreter switch interval for processes that feed a SignaturePool (sys.setswitchinterval):
#: a pool thread needs the GIL twice per chunk, and at the default 5 ms it waits for the
#: feeding thread's slice to run out each time (measured: the pool then gained nothing)
SWITCH_INTERVAL = 0.0005
_ON_CALLER = SignaturePool(None)


#: an entry after :func:`precheck_entry`: its signature check, and the verdict on it if known
_Prechecked = tuple[CheckedEntry, SignatureCheck | None, bool | None]


def check_entries(records: Sequence[tuple[int, bytes]], config: CheckerConfig,
                  signatures: SignaturePool | None = None,
                  verdicts: Mapping[int, bool] | None = None, tally: Stats | None = None) -> Iterator[CheckedEntry]:
    """:func:`check_entry` for a run of records, in order, lazily. With ``signatures``,
    chunks of records (``_chunks``) are pre-checked and their signatures handed to the
    pool, so the signatures of chunk *k* are checked while chunk *k + 1* is pre-checked
    and the caller consumes chunk *k - 1*. ``verdicts``: from :func:`check_raw_signatures`
    on these records; an entry's verdict is taken where its :func:`raw_signature_check`
    equals the check made from the decoded entry, every other signature is checked here;
    ``tally.signatures_checked_ahead`` counts the verdicts taken."""
    signatures = signatures or _ON_CALLER
    ahead: deque[tuple[list[_Prechecked], Callable[[], list[bool]]]] = deque()
    for start, end in _chunks(len(records)):
        pre = [_with_verdict(precheck_entry(r, config), verdicts, config) for r in records[start:end]]
        if verdicts and tally is not None:
            tally.signatures_checked_ahead += sum(known is not None for _, _, known in pre)
        ahead.append((pre, signatures.submit([sig for _, sig, known in pre if sig is not None and known is None])))
        if len(ahead) > 1:
            yield from _settled(*ahead.popleft())
    while ahead:
        yield from _settled(*ahead.popleft())


def _with_verdict(pre: tuple[CheckedEntry, SignatureCheck | None], verdicts: Mapping[int, bool] | None,
                  config: CheckerConfig) -> _Prechecked:
    checked, signature = pre
    known = None if signature is None or not verdicts else verdicts.get(checked.offset)
    if known is not None and not _reads_as(checked.raw, signature, config):
        known = None  # the verdict is about other bytes than the decoded entry's: check these
    return checked, signature, known


def _chunks(n: int) -> list[tuple[int, int]]:
    """[start, end) of the chunks of a run of ``n`` records: ``PIPELINE_CHUNK`` long, but a
    quarter of that at both ends, where nothing overlaps: the signature thread waits for the
    first chunk to be pre-checked, and the caller for the last chunk's signatures."""
    edge = max(1, PIPELINE_CHUNK // 4)
    bounds, start = [], 0
    while start < n:
        middle = start and n - start > PIPELINE_CHUNK + 2 * edge
        end = min(n, start + (PIPELINE_CHUNK if middle else edge))
        bounds.append((start, end))
        start = end
    return bounds


def _settled(pre: list[_Prechecked], verdicts: Callable[[], list[bool]]) -> Iterator[CheckedEntry]:
    valid = iter(verdicts())
    for checked, signature, known in pre:
        if signature is None:
            yield checked
        else:
            yield settle_signature(checked, signature, next(valid) if known is None else known)
