"""The witness client over a real ledger index (IndexCore, tiles on disk) and in-process
witnesses (witness/server.py's logic, called without HTTP): what it submits, what it commits,
and how it learns, catches up and refuses. The cosignatures it commits go back through the
index, which checks them like every verifier."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledgerstream.core import mldsa, note
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.core.verify.trust import Witness as WitnessConfig
from ledgerstream.core.wire import codec
from ledgerstream.index.core import IndexCore
from ledgerstream.index.paths import IndexPaths
from ledgerstream.index.reads import IndexedLedger
from ledgerstream.witness import protocol
from ledgerstream.witness.client import WitnessClient
from ledgerstream.witness.server import Witness
from ledgerstream.witness.state import WitnessState
from support.ledger_builder import LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))
LOG_ED = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ORIGIN = "ledgerstream/test"
LOG_LINE = note.NoteSigner(ORIGIN, note.ED25519, ed25519=LOG_ED)


class Ledger:
    """A signer's records with their log note lines, indexed as they are written."""

    def __init__(self, tmp: Path, config: CheckerConfig) -> None:
        self.b = LedgerBuilder(KEY, origin=ORIGIN)
        self.paths = IndexPaths(tmp / "index", tmp / "tiles")
        self.core = IndexCore(self.paths, config, fsync=False)
        self.next = {"entries": 0, "checkpoints": 0}

    def put(self, role: str, raw: bytes) -> None:
        self.core.process([(role, self.next[role], raw)])
        self.next[role] += 1

    def grow(self, n: int) -> dict[str, Any]:
        for e in self.b.many(n):
            self.put("entries", entry_bytes(e))
        cp = self.b.checkpoint()
        self.put("checkpoints", enc("Checkpoint", cp))
        sig = LOG_LINE.sign(cp["body"])
        self.put("checkpoints", codec.encode("NoteSignature", {
            "tree_size": cp["tree_size"], "body_hash": hashlib.sha256(cp["body"]).digest(),
            "role": "log", "name": sig.name, "key_id": sig.key_id, "signature": sig.signature, "created_at": 1}))
        return cp

    def reader(self, config: CheckerConfig) -> IndexedLedger:
        return IndexedLedger.open(self.paths, "unused:9092", _topics(), config)


def _topics():
    from ledgerstream.core.config import Topics
    return Topics.with_prefix()


def setup(tmp_path: Path, n_witnesses: int = 2):
    witnesses, servers = [], {}
    for i in range(n_witnesses):
        signer = note.NoteSigner(f"w{i}.example/pq", note.MLDSA65_COSIGNATURE,
                                 ml_dsa=mldsa.PrivateKey.from_seed(bytes([i + 7]) * 32))
        servers[f"http://w{i}"] = Witness(signer, [LOG_LINE.verifier], WitnessState(tmp_path / f"w{i}"))
        witnesses.append(WitnessConfig(signer.verifier, f"http://w{i}"))
    config = CheckerConfig.from_keys([KEY.public_key()], note_keys=(LOG_LINE.verifier,),
                                     witnesses=tuple(w.verifier for w in witnesses), witness_quorum=n_witnesses)
    ledger = Ledger(tmp_path, config)
    committed: list[bytes] = []
    sent: list[tuple[str, int, int]] = []

    def post(url: str, body: bytes) -> tuple[int, bytes]:
        req = protocol.parse_request(body)
        sent.append((url, req.old_size, note.checkpoint_fields(note.parse_note(req.note)[0])[1]))
        a = servers[url].add_checkpoint(body)
        return a.status, a.body

    client = WitnessClient(witnesses, config, committed.append, post)
    return ledger, client, committed, sent, servers, config


def feed_back(ledger: Ledger, committed: list[bytes]) -> None:
    """What the client committed arrives on the checkpoints topic: the index checks it."""
    while committed:
        ledger.put("checkpoints", committed.pop(0))


def step(ledger: Ledger, client: WitnessClient, config: CheckerConfig) -> int:
    reader = ledger.reader(config)
    try:
        return client.step(reader)
    finally:
        reader.close()


def test_every_checkpoint_gets_cosigned_in_order_and_the_index_verifies_them(tmp_path: Path) -> None:
    ledger, client, committed, sent, _, config = setup(tmp_path)
    ledger.grow(10)
    ledger.grow(4)
    assert step(ledger, client, config) == 4  # fresh witnesses cosign the first at once (old 0), then 14
    ledger.grow(3)
    ledger.grow(300)
    assert step(ledger, client, config) == 4  # 17 then 317, in order, from each witness
    assert [(old, size) for url, old, size in sent if url == "http://w0"] == [(0, 10), (10, 14), (14, 17), (17, 317)]
    feed_back(ledger, committed)
    rows = ledger.core.conn.execute(
        "SELECT tree_size, role, status FROM note_signatures ORDER BY topic_offset").fetchall()
    assert sorted(r for r in rows if r[1] == "witness") == [(s, "witness", "verified")
                                                            for s in (10, 10, 14, 14, 17, 17, 317, 317)]
    assert ledger.core.checker.witnessed_size == 317
    reader = ledger.reader(config)
    assert reader.witnessed_size == 317  # from the verified cosignature rows: the same answer
    reader.close()
    # the tiles' checkpoint file now carries both cosignatures and verifies with every key
    text, verified = note.verify_note((ledger.paths.tiles_dir / "checkpoint").read_bytes(),
                                      [LOG_LINE.verifier, *config.witnesses])
    assert {v.name for v, _ in verified} == {ORIGIN, "w0.example/pq", "w1.example/pq"}
    assert step(ledger, client, config) == 0 and sent[-1][2] == 317  # nothing new: nothing sent


def test_a_restarted_client_learns_each_witness_size_from_a_409(tmp_path: Path) -> None:
    ledger, client, committed, sent, servers, config = setup(tmp_path)
    ledger.grow(5)
    assert step(ledger, client, config) == 2
    ledger.grow(5)
    ledger.grow(5)
    again = WitnessClient(client.witnesses, config, committed.append, client.post)  # knows nothing
    sent.clear()
    assert step(ledger, again, config) == 4
    w0 = [(old, size) for url, old, size in sent if url == "http://w0"]
    assert w0 == [(0, 5), (5, 10), (10, 15)]  # probe (409 says 5), then each checkpoint in order
    assert servers["http://w0"].counts["conflicts"] == 1


def test_a_witness_that_refuses_leaves_an_error_and_nothing_committed(tmp_path: Path) -> None:
    ledger, client, committed, sent, servers, config = setup(tmp_path, n_witnesses=1)
    ledger.grow(6)
    # the witness has cosigned another history of this log, larger than ours
    other = LedgerBuilder(KEY, origin=ORIGIN)
    other.many(4, agents=("elsewhere",))
    body = other.checkpoint()["body"]
    assert servers["http://w0"].add_checkpoint(protocol.format_request(
        0, [], note.format_note(body, [LOG_LINE.sign(body)]))).status == 200
    assert step(ledger, client, config) == 0
    assert committed == []
    view = client.views["w0.example/pq"]
    assert view.size == 4 and view.last_error.startswith("HTTP 422")


def test_a_cosignature_that_does_not_verify_is_not_committed(tmp_path: Path) -> None:
    ledger, client, committed, _, servers, config = setup(tmp_path, n_witnesses=1)
    ledger.grow(3)
    real = client.post

    def tampered(url: str, body: bytes) -> tuple[int, bytes]:
        status, answer = real(url, body)
        line = protocol.parse_cosignatures(answer)[0]
        bad = note.Signature(line.name, line.key_id, line.signature[:-1] + bytes([line.signature[-1] ^ 1]))
        return status, bad.line().encode()

    client.post = tampered
    assert step(ledger, client, config) == 0 and committed == []
    assert "does not verify" in client.views["w0.example/pq"].last_error
