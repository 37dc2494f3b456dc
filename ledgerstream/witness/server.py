"""``ledgerstream witness serve``: a c2sp.org/tlog-witness witness that cosigns with ML-DSA-65.

It cosigns a checkpoint only if a configured log key signed it and it is consistent with
the newest checkpoint of that origin it cosigned before (RFC 9162 consistency proof from the
client), which it persists before answering (state.py); so it never cosigns two
inconsistent checkpoints, also across crashes and restarts. Cosignatures are ledgerstream's
ML-DSA-65 variant of tlog-cosignature's ``subtree/v1`` message (docs/spec.md section 6).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

from ledgerstream.core import merkle, note
from ledgerstream.core.errors import ProofError, VerificationError
from ledgerstream.witness import protocol
from ledgerstream.witness.state import WitnessState

log = logging.getLogger("ledgerstream.witness")

#: log key kinds a witness accepts on a submitted checkpoint
LOG_KINDS = (note.ED25519, note.MLDSA65)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class Witness:
    """The protocol logic, without HTTP: one call per ``add-checkpoint`` request."""

    def __init__(self, signer: note.NoteSigner, logs: Sequence[note.Verifier], state: WitnessState,
                 clock=time.time) -> None:
        if signer.kind not in note.COSIGNATURE_KINDS:
            raise ValueError("a witness signs cosignatures")
        bad = [v.vkey[:60] for v in logs if v.kind not in LOG_KINDS]
        if bad:
            raise ValueError(f"log keys must be Ed25519 or ML-DSA-65 note keys: {bad}")
        self.signer, self.state, self.clock = signer, state, clock
        self.logs: dict[str, list[note.Verifier]] = {}
        for v in logs:
            self.logs.setdefault(v.name, []).append(v)
        self.counts = {"cosigned": 0, "conflicts": 0, "refused": 0}

    def add_checkpoint(self, body: bytes) -> Answer:
        answer = self._add(body)
        self.counts["cosigned" if answer.status == 200 else "conflicts" if answer.status == 409 else "refused"] += 1
        return answer

    def _add(self, body: bytes) -> Answer:
        try:
            req = protocol.parse_request(body)
            text, _ = note.parse_note(req.note)
            origin, size, root = note.checkpoint_fields(text)
        except ValueError as exc:
            return Answer(400, f"bad request: {exc}\n".encode())
        keys = self.logs.get(origin)
        if keys is None:
            return Answer(404, f"unknown log origin {origin[:100]!r}\n".encode())
        try:
            note.verify_note(req.note, keys)
        except VerificationError as exc:
            return Answer(403, f"checkpoint signature: {exc}\n".encode())
        if req.old_size > size:
            return Answer(400, b"old size is larger than the checkpoint size\n")
        if size == 0 and root != merkle.EMPTY_ROOT:
            return Answer(422, b"a checkpoint of size 0 must have the empty root\n")
        with self.state.lock:  # the check and the update are one step (tlog-witness: no rollback race)
            known_size, known_root = self.state.head(origin) or (0, merkle.EMPTY_ROOT)
            if req.old_size != known_size:
                return Answer(409, f"{known_size}\n".encode(), protocol.SIZE_CONTENT_TYPE)
            if req.old_size == 0 and req.proof:
                return Answer(422, b"old size 0 needs an empty proof\n")
            try:
                merkle.verify_consistency(known_size, size, known_root, root, req.proof)
            except ProofError as exc:
                log.warning("refused an inconsistent checkpoint of %s at size %d (we cosigned size %d): %s",
                            origin, size, known_size, exc)
                return Answer(422, f"not consistent with the checkpoint of size {known_size}: {exc}\n".encode())
            if size > known_size:
                self.state.set(origin, size, root)
        line = self.signer.sign(text, timestamp=int(self.clock()))
        return Answer(200, line.line().encode())


class _Handler(BaseHTTPRequestHandler):
    server: "WitnessServer"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != protocol.PATH:
            return self._send(Answer(404, b"not found\n"))
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self._send(Answer(411, b"Content-Length required\n"))
        if int(length) > protocol.MAX_REQUEST_BYTES:
            return self._send(Answer(413, b"request too large\n"))
        self._send(self.server.witness.add_checkpoint(self.rfile.read(int(length))))

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/vkey":
            return self._send(Answer(200, (self.server.witness.signer.verifier.vkey + "\n").encode()))
        self._send(Answer(404, b"not found\n"))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, fmt: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), fmt % args)


class WitnessServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness) -> None:
        self.witness = witness
        super().__init__(address, _Handler)


def serve(witness: Witness, host: str, port: int, stop: threading.Event, ready: Path | None = None) -> None:
    """Serve until ``stop`` is set; write ``ready`` (host:port) once listening."""
    server = WitnessServer((host, port), witness)
    threading.Thread(target=server.serve_forever, name="witness-http", daemon=True).start()
    bound = f"{server.server_address[0]}:{server.server_address[1]}"
    log.info("witness %s listening on http://%s", witness.signer.name, bound)
    if ready is not None:
        ready.write_text(bound + "\n")
    stop.wait()
    server.shutdown()
    server.server_close()
