"""The witness client: submits the newest verified checkpoint to every configured witness
(c2sp.org/tlog-witness) with a consistency proof from the size that witness last cosigned,
and commits each returned cosignature that verifies as a ``NoteSignature`` record (role
``witness``) on the ``checkpoints`` topic, where every verifier checks it again.

Every verified checkpoint newer than what a witness cosigned is submitted, oldest first, so
each gets its own cosignatures (up to ``PER_PASS`` per witness and pass while catching up).
A witness's size is unknown at start: the first checkpoint is submitted with ``old 0``; a
409 answer teaches the size, and a witness that never saw this log cosigns it and then every
later one. Any other failure is retried on the next pass.

It reads the ledger index (the verified checkpoints, their log note lines) and its tiles (the
proofs), never the topics, so a submission costs O(log n) at any ledger size. Its Kafka
principal (role ``witness``) may only write to ``checkpoints``.
"""
from __future__ import annotations

import hashlib
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ledgerstream.core.tiles import TileReader
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.core.verify.checkpoints import checkpoint_note
from ledgerstream.core.verify.trust import Witness
from ledgerstream.core.wire import codec
from ledgerstream.index import query
from ledgerstream.index.reads import IndexedLedger
from ledgerstream.witness import protocol

log = logging.getLogger("ledgerstream.witness.client")
#: checkpoints submitted to one witness per pass at most, while it catches up
PER_PASS = 256

#: (url, body) -> (HTTP status, body)
Post = Callable[[str, bytes], tuple[int, bytes]]
#: value -> None: writes one record to the checkpoints topic and waits until it is stored
Commit = Callable[[bytes], None]


def http_post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url.rstrip("/") + protocol.PATH, data=body, method="POST",
                                 headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (configured URLs)
            return resp.status, resp.read(protocol.MAX_REQUEST_BYTES)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096)


@dataclass
class WitnessView:
    """What the client knows of one witness."""

    witness: Witness
    size: int | None = None  # the size it last cosigned, as far as we know (None: not known yet)
    cosigned: int = 0      # cosignatures committed this run
    last_error: str | None = None
    last_ok: float | None = None

    def status(self) -> dict[str, Any]:
        return {"name": self.witness.name, "url": self.witness.url, "size": self.size, "cosigned": self.cosigned,
                "last_error": self.last_error, "last_ok": self.last_ok}


@dataclass
class WitnessClient:
    witnesses: Sequence[Witness]
    config: CheckerConfig
    commit: Commit
    post: Post = http_post
    views: dict[str, WitnessView] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.views = {w.name: WitnessView(w) for w in self.witnesses if w.url}

    def step(self, ledger: IndexedLedger) -> int:
        """Submit to each witness the verified checkpoints (covered by the tiles) newer than
        what it cosigned; returns the number of cosignatures committed."""
        newest = query.latest_checkpoint(ledger.conn)
        tiles_size = query.tiles_size(ledger.conn)
        if newest is None or newest.tree_size > tiles_size:
            return 0
        tiles = TileReader(ledger.paths.tiles_dir, tiles_size)
        done = 0
        for view in self.views.values():
            if view.size is None:  # learn its size (409), or it cosigns the first checkpoint
                first = query.verified_checkpoints_after(ledger.conn, 0, 1)[0]
                done += self._submit(view, first, self._note(ledger, first), tiles, probe=True)
            if view.size is None or view.size >= newest.tree_size:
                continue
            for cp in query.verified_checkpoints_after(ledger.conn, view.size, PER_PASS):
                if cp.tree_size > tiles_size:
                    break
                got = self._submit(view, cp, self._note(ledger, cp), tiles)
                done += got
                if not got:
                    break  # the error is in view.last_error; next pass
        return done

    def _note(self, ledger: IndexedLedger, cp: query.Checkpoint) -> bytes:
        """The checkpoint with the log's own lines (Ed25519, ML-DSA-65), as witnesses check it."""
        return checkpoint_note(cp.record(), [n for n in ledger.note_lines(cp) if n.role == "log"], self.config)

    def _submit(self, view: WitnessView, cp: query.Checkpoint, signed: bytes, tiles: TileReader, *,
                probe: bool = False) -> int:
        """One checkpoint to one witness; a 409 teaches its size (then, unless ``probe``, the
        checkpoint is submitted again from that size)."""
        for _ in range(3):
            old = view.size or 0
            if old > cp.tree_size:
                return 0  # it has cosigned a larger tree already
            proof = tiles.consistency_proof(old, cp.tree_size) if 0 < old < cp.tree_size else []
            try:
                status, body = self.post(view.witness.url or "", protocol.format_request(old, proof, signed))
            except OSError as exc:
                view.last_error = f"unreachable: {exc}"
                return 0
            if status == 409:
                try:
                    view.size = protocol.parse_conflict(body)
                except ValueError as exc:
                    view.last_error = str(exc)
                    return 0
                if probe:
                    return 0
                continue
            if status != 200:
                view.last_error = f"HTTP {status}: {body[:200].decode('utf-8', 'replace').strip()}"
                log.warning("witness %s refused checkpoint %d: %s", view.witness.name, cp.tree_size, view.last_error)
                return 0
            return self._accept(view, cp, body)
        view.last_error = "the witness's size kept changing"
        return 0

    def _accept(self, view: WitnessView, cp: query.Checkpoint, body: bytes) -> int:
        try:
            lines = protocol.parse_cosignatures(body)
        except ValueError as exc:
            view.last_error = f"malformed answer: {exc}"
            return 0
        committed = 0
        for line in lines:
            if not view.witness.verifier.matches(line):
                continue  # tlog-witness: ignore cosignatures from keys we do not know
            try:
                view.witness.verifier.verify(cp.body, line)
            except Exception as exc:  # noqa: BLE001 (VerificationError, or a malformed line)
                view.last_error = f"cosignature does not verify: {exc}"
                return committed
            self.commit(codec.encode("NoteSignature", {
                "tree_size": cp.tree_size, "body_hash": _sha256(cp.body), "role": "witness", "name": line.name,
                "key_id": line.key_id, "signature": line.signature, "created_at": time.time_ns() // 1000}))
            committed += 1
        if committed:
            view.size, view.cosigned, view.last_error, view.last_ok = cp.tree_size, view.cosigned + committed, None, time.time()
        else:
            view.last_error = "no cosignature from the configured key in the answer"
        return committed


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def status_file(home: Path) -> Path:
    return home / "witness" / "client-status.json"
