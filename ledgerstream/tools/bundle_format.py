"""The evidence-bundle layout (docs/bundle-format.md): member names and canonical renderings.

Why one module: the exporter writes and the verifier re-derives exactly these bytes, so
both take them from here. Every JSON member is RFC 8785 (JCS) so that a verifier can
require byte equality with its own rendering: no whitespace or key order is free, and
any flipped byte is detected even in members that carry no signature of their own.
"""
from __future__ import annotations

import json
import re
from typing import Any

import fastavro
from cryptography import x509
from cryptography.hazmat.primitives import serialization
import rfc8785
from fastavro.schema import parse_schema, to_parsing_canonical_form

from ledgerstream.core import records
from ledgerstream.core.wire import codec

FORMAT = "ledgerstream-bundle"
FORMAT_VERSION = 1
SUPPORTED_SPEC_VERSIONS = (1,)

MANIFEST = "manifest.json"
README = "README.md"
SELECTION = "selection.json"
TSA_CA = "tsa-ca.pem"
CHECKPOINT = "checkpoint"  # the main checkpoint's note body, top level for `openssl ts -verify -data checkpoint`

_N = r"(0|[1-9][0-9]*)"  # canonical decimal: names are derived, never free
CHECKPOINT_RE = re.compile(rf"^(?:checkpoints/{_N}/)?checkpoint(\.sig|\.avro|\.json|\.tsr|\.([2-9]|[1-9][0-9]+)\.tsr)?$")
ENTRY_RE = re.compile(rf"^entries/{_N}\.(avro|json)$")
INCLUSION_RE = re.compile(rf"^proofs/inclusion/{_N}\.json$")
CONSISTENCY_RE = re.compile(rf"^proofs/consistency/{_N}-{_N}\.json$")
KEY_RE = re.compile(r"^keys/([0-9a-f]{64})\.pem$")
NOTE = "checkpoint.note"  # the main checkpoint as a C2SP signed note: log lines and verified cosignatures
WITNESSES = "witnesses.json"  # {"quorum", "log_vkeys", "witnesses"}: the note keys the exporter trusted
APPROVERS = "approvers.json"  # the approver set that entries' approvals are checked against
APPROVER_KEY_RE = re.compile(r"^approvers/([0-9a-f]{64})\.pem$")
SCHEMA_RE = re.compile(r"^schemas/([A-Za-z_][A-Za-z0-9_]*)\.([0-9a-f]{16})\.avsc$")


def checkpoint_prefix(tree_size: int | None) -> str:
    """Folder of a checkpoint's members: top level for the main one, else checkpoints/<size>/."""
    return "" if tree_size is None else f"checkpoints/{tree_size}/"


def token_name(prefix: str, index: int) -> str:
    """checkpoint.tsr for the first token, checkpoint.2.tsr, checkpoint.3.tsr, ... after it."""
    return f"{prefix}checkpoint.tsr" if index == 0 else f"{prefix}checkpoint.{index + 1}.tsr"


def entry_avro(seq: int) -> str:
    return f"entries/{seq}.avro"


def entry_json(seq: int) -> str:
    return f"entries/{seq}.json"


def inclusion_name(seq: int) -> str:
    return f"proofs/inclusion/{seq}.json"


def consistency_name(size1: int, size2: int) -> str:
    return f"proofs/consistency/{size1}-{size2}.json"


def key_name(key_id: str) -> str:
    return f"keys/{key_id}.pem"


def approver_key_name(key_id: str) -> str:
    return f"approvers/{key_id}.pem"


def schema_name(record_name: str, fp: bytes) -> str:
    return f"schemas/{record_name}.{fp.hex()}.avsc"


# --- canonical renderings -----------------------------------------------------------------------

def canonical(value: Any) -> bytes:
    """RFC 8785 bytes: the only serialisation of JSON members."""
    return rfc8785.dumps(value)


def render_entry(record: dict[str, Any]) -> bytes:
    """entries/<seq>.json: the record (bytes as hex) and, for readers, the payload parsed."""
    payload = record["action"].get("payload")
    parsed = None
    if payload is not None:
        try:
            parsed = json.loads(bytes(payload).decode("utf-8"))
        except ValueError:
            parsed = None
    return canonical({"entry": records.jsonable(record), "payload": parsed})


def render_checkpoint(record: dict[str, Any]) -> bytes:
    return canonical({"checkpoint": records.jsonable(record)})


def inclusion_doc(seq: int, tree_size: int, entry_hash: bytes, leaf_hash: bytes, root: bytes,
                  path: list[bytes]) -> bytes:
    return canonical({"leaf_index": seq, "tree_size": tree_size, "entry_hash": entry_hash.hex(),
                      "leaf_hash": leaf_hash.hex(), "root": root.hex(), "path": [p.hex() for p in path]})


def consistency_doc(size1: int, root1: bytes, size2: int, root2: bytes, path: list[bytes]) -> bytes:
    return canonical({"size1": size1, "root1": root1.hex(), "size2": size2, "root2": root2.hex(),
                      "path": [p.hex() for p in path]})


def canonical_pem(certs: list[x509.Certificate]) -> bytes:
    """tsa-ca.pem: the certificates re-encoded as plain PEM, so its bytes are its identity."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# --- schemas ----------------------------------------------------------------------------------

def schema_text(parsed: Any) -> bytes:
    """The Parsing Canonical Form: its CRC-64-AVRO is the fingerprint in every record header."""
    return to_parsing_canonical_form(parsed).encode("utf-8")


def schema_fingerprint(text: bytes) -> bytes:
    return codec.schema_fingerprint(text.decode("utf-8"))


def schema_references(text: bytes) -> set[str]:
    """Full names a schema text uses but does not define (the codec fingerprints each .avsc
    file with references to types that other files define, e.g. ledgerstream.ActionEvent)."""
    defined: set[str] = set()
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed"):
                defined.add(node["name"])
            for key, value in node.items():
                if key == "type" and isinstance(value, str) and "." in value:
                    used.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                if isinstance(value, str) and "." in value:
                    used.add(value)
                walk(value)

    walk(json.loads(text.decode("utf-8")))
    return used - defined


def load_schemas(texts: dict[str, bytes]) -> tuple[dict[bytes, Any], list[tuple[str, str]]]:
    """Parse bundled schema files (member name -> PCF bytes) in dependency order.

    Returns the writer schemas by fingerprint and (member, problem) for each file that does
    not parse, is not in Parsing Canonical Form, or whose CRC-64-AVRO is not its name's.
    """
    named: dict[str, Any] = {}
    pending = dict(texts)
    schemas: dict[bytes, Any] = {}
    problems: list[tuple[str, str]] = []
    while pending:
        progressed = False
        for member, text in list(pending.items()):
            m = SCHEMA_RE.fullmatch(member)
            assert m is not None, member
            try:
                raw = json.loads(text.decode("utf-8"))
                parsed = parse_schema(raw, named_schemas=named)
            except fastavro.schema.UnknownType:
                continue
            except Exception as exc:  # fastavro raises many kinds on bad schemas
                problems.append((member, f"does not parse: {type(exc).__name__}: {exc}"))
            else:
                fp = schema_fingerprint(text)
                if schema_text(parsed) != text:
                    problems.append((member, "not in Avro Parsing Canonical Form"))
                # bundles exported before D32 name (and head) records with the legacy byte order (codec)
                elif m.group(2) not in (fp.hex(), fp[::-1].hex()) or parsed["name"].rsplit(".", 1)[-1] != m.group(1):
                    problems.append((member, f"is {parsed['name']} with fingerprint {fp.hex()}, not what its name says"))
                else:
                    schemas[fp] = schemas[fp[::-1]] = parsed
            del pending[member]
            progressed = True
        if not progressed:
            problems.extend((member, "references types no bundled schema defines") for member in pending)
            break
    return schemas, problems
