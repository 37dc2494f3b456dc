"""The c2sp.org/tlog-witness ``add-checkpoint`` request and its answers, for both ends.

Request body: ``old <size>\\n``, up to 63 base64 consistency-proof lines, an empty line, then
the signed checkpoint note. Answers: 200 with cosignature lines, 409 (``text/x.tlog.size``:
the size the witness last cosigned), 400, 403, 404, 422.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ledgerstream.core import note

PATH = "/add-checkpoint"
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 + MAX_PROOF_LINES * 46 + note.MAX_NOTE_BYTES
SIZE_CONTENT_TYPE = "text/x.tlog.size"


class BadRequest(ValueError):
    """The request is malformed (HTTP 400)."""


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: list[bytes]
    note: bytes


def format_request(old_size: int, proof: list[bytes], signed_note: bytes) -> bytes:
    if old_size < 0 or len(proof) > MAX_PROOF_LINES:
        raise ValueError("bad old size or proof")
    lines = [f"old {old_size}\n".encode()] + [base64.b64encode(h) + b"\n" for h in proof]
    return b"".join(lines) + b"\n" + signed_note


def parse_request(body: bytes) -> AddCheckpoint:
    """The request's parts; BadRequest for anything the protocol does not allow."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request of {len(body)} bytes is over {MAX_REQUEST_BYTES}")
    head, sep, signed = body.partition(b"\n\n")
    if not sep:
        raise BadRequest("no empty line before the checkpoint")
    lines = head.split(b"\n")
    if not lines[0].startswith(b"old "):
        raise BadRequest("the first line must be 'old <size>'")
    size = lines[0][4:]
    if not size.isdigit() or (size != b"0" and size.startswith(b"0")):
        raise BadRequest("the old size must be decimal without leading zeros")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise BadRequest(f"more than {MAX_PROOF_LINES} proof lines")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise BadRequest("a proof line is not base64") from None
        if len(h) != 32:
            raise BadRequest("a proof line is not a 32-byte hash")
        proof.append(h)
    return AddCheckpoint(int(size), proof, signed)


def parse_conflict(body: bytes) -> int:
    """The witness's size from a 409 answer; ValueError if it is not ``<decimal>\\n``."""
    text = body.decode("ascii", "replace")
    if not text.endswith("\n") or not text[:-1].isdigit():
        raise ValueError(f"409 answer is not a tree size: {text[:40]!r}")
    return int(text[:-1])


def parse_cosignatures(body: bytes) -> list[note.Signature]:
    """The signature lines of a 200 answer (unverified)."""
    if len(body) > note.MAX_NOTE_BYTES or not body.endswith(b"\n"):
        raise ValueError("cosignature answer too long or not newline-terminated")
    return [note.Signature.from_line(line) for line in body.decode().splitlines()]
