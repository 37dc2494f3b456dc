"""Avro single-object encoding for every record on every topic.

Wire form (Avro spec, "Single-object encoding"): ``C3 01`` + the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form + the Avro
binary body. Readers look the writer schema up by fingerprint and resolve it against
their own (reader) schema, so schemas can evolve.

Until decision D32 (docs/decisions.md) the fingerprint was written in the opposite (big-endian) byte order,
which standard Avro decoders do not recognise. Records on the topics keep the header they
were written with (hashes and signatures never cover Avro bytes, decision D2), so readers
accept both orders; writers only write the standard one.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import fastavro
from fastavro.schema import expand_schema, fingerprint, parse_schema, to_parsing_canonical_form

from ledgerstream.core.errors import DecodeError

MAGIC = b"\xc3\x01"
HEADER_LEN = 10

#: the top-level record types of the wire contract, by short name
RECORD_TYPES = ("ActionEvent", "LedgerEntry", "Checkpoint", "TimestampAnchor", "NoteSignature", "Alert", "DeadLetter",
                "SignerSnapshot", "SignerDedupChunk")


@dataclass(frozen=True)
class WriterSchema:
    """A parsed schema together with its name and single-object fingerprint."""

    name: str
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as on the wire

    @property
    def legacy_fingerprint(self) -> bytes:
        """The byte-reversed fingerprint that ledgerstream wrote until D32 (read, never written)."""
        return self.fingerprint[::-1]


def schema_fingerprint(canonical: str) -> bytes:
    """The 8 header bytes for a schema's Parsing Canonical Form: its CRC-64-AVRO (Rabin)
    fingerprint, little-endian, as the Avro specification writes it (fastavro's hex is
    already in that byte order)."""
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def _fingerprint(parsed: Any) -> bytes:
    return schema_fingerprint(to_parsing_canonical_form(parsed))


def _order_sources(sources: Iterable[tuple[str, str]]) -> list[Any]:
    """Raw schemas in dependency order (a file may use types another file defines)."""
    pending = [json.loads(text) for _, text in sources]
    ordered = _resolvable(pending)
    if len(ordered) != len(pending):
        left = [r.get("name") for r in pending if not any(r is o for o in ordered)]
        raise DecodeError("schema_error", f"unresolvable schema references in {left}")
    return ordered


def _self_contained(raws: list[Any]) -> list[Any]:
    """Each schema with every named type it uses written out in full.

    The Avro spec defines the fingerprint over the Parsing Canonical Form of the whole
    schema, so a reference to a type from another file must be expanded first.
    """
    return expand_schema(raws)


class SchemaRegistry:
    """Writer schemas by fingerprint and current schemas by record name.

    Built from the ``schemas/`` package data; older writer versions can be added with
    :meth:`add_writer_schema` so records written by old producers stay readable.
    """

    def __init__(self, sources: Iterable[tuple[str, str]]) -> None:
        self._current: dict[str, WriterSchema] = {}
        self._by_fp: dict[bytes, WriterSchema] = {}
        self._raws = _order_sources(sources)
        for full in _self_contained(self._raws):
            parsed = parse_schema(full, named_schemas={})
            name = parsed["name"].rsplit(".", 1)[-1]
            ws = WriterSchema(name, parsed, _fingerprint(parsed))
            self._current[name] = ws
            self._register(ws)

    @classmethod
    def from_package(cls) -> "SchemaRegistry":
        """The current schemas, plus every earlier writer version kept in ``schemas/history/``
        (``<Name>.v<N>.avsc``), so records already on the topics stay readable."""
        root = resources.files("ledgerstream.schemas")
        files = sorted(p for p in root.iterdir() if p.name.endswith(".avsc"))
        registry = cls((p.name, p.read_text(encoding="utf-8")) for p in files)
        history = root / "history"
        if history.is_dir():
            for p in sorted(h for h in history.iterdir() if h.name.endswith(".avsc")):
                registry.add_writer_schema(p.read_text(encoding="utf-8"), named_like=p.name.split(".", 1)[0])
        return registry

    def add_writer_schema(self, schema_json: str | dict, *, named_like: str | None = None) -> WriterSchema:
        """Register an older (or foreign) writer schema; returns it with its fingerprint."""
        raw = json.loads(schema_json) if isinstance(schema_json, str) else schema_json
        try:
            full = _self_contained([raw])[-1]
        except fastavro.schema.UnknownType:
            # It uses current types from other files; names it defines itself win.
            own = _defined_names(raw)
            context = _resolvable([r for r in self._raws if not (_defined_names(r) & own)])
            full = _self_contained(context + [raw])[-1]
        parsed = parse_schema(full, named_schemas={})
        name = named_like or parsed["name"].rsplit(".", 1)[-1]
        ws = WriterSchema(name, parsed, _fingerprint(parsed))
        self._register(ws)
        return ws

    def _register(self, ws: WriterSchema) -> None:
        """Index ``ws`` under its fingerprint and under the legacy byte order (see the module
        docstring); two schemas that would share either key are refused."""
        for fp in (ws.fingerprint, ws.legacy_fingerprint):
            known = self._by_fp.get(fp)
            if known is not None and known.fingerprint != ws.fingerprint:
                raise DecodeError("schema_error", f"schemas {known.name} and {ws.name} share the header bytes {fp.hex()}")
            self._by_fp[fp] = ws

    def schema(self, name: str) -> WriterSchema:
        try:
            return self._current[name]
        except KeyError:
            raise DecodeError("unknown_schema", f"no schema named {name!r}") from None

    def by_fingerprint(self, fp: bytes) -> WriterSchema | None:
        """The writer schema whose header bytes are ``fp`` (standard or legacy order)."""
        return self._by_fp.get(fp)

    def names(self) -> list[str]:
        return sorted(self._current)


def _resolvable(raws: list[Any]) -> list[Any]:
    """The raws that resolve among themselves, in dependency order (those that need a type
    none of them defines are left out)."""
    named: dict[str, Any] = {}
    ordered: list[Any] = []
    pending = list(raws)
    progressed = True
    while pending and progressed:
        progressed = False
        for raw in list(pending):
            try:
                parse_schema(raw, named_schemas=named)
            except fastavro.schema.UnknownType:
                continue
            ordered.append(raw)
            pending.remove(raw)
            progressed = True
    return ordered


def _defined_names(raw: Any, namespace: str = "") -> set[str]:
    names: set[str] = set()
    if isinstance(raw, dict):
        if raw.get("type") in ("record", "enum", "fixed") and "name" in raw:
            ns = raw.get("namespace", namespace)
            full = raw["name"] if "." in raw["name"] or not ns else f"{ns}.{raw['name']}"
            names.add(full)
            namespace = full.rsplit(".", 1)[0] if "." in full else ns
        for value in raw.values():
            names |= _defined_names(value, namespace)
    elif isinstance(raw, list):
        for value in raw:
            names |= _defined_names(value, namespace)
    return names


_REGISTRY: SchemaRegistry | None = None


def registry() -> SchemaRegistry:
    """The process-wide registry of the shipped schemas (built once)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = SchemaRegistry.from_package()
    return _REGISTRY


def encode(name: str, record: dict[str, Any], *, reg: SchemaRegistry | None = None) -> bytes:
    """Encode ``record`` with the current schema ``name`` as an Avro single object."""
    ws = (reg or registry()).schema(name)
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(ws.fingerprint)
    try:
        fastavro.schemaless_writer(buf, ws.parsed, record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"record does not match schema {name}: {exc}") from exc
    return buf.getvalue()


def encode_with(ws: WriterSchema, record: dict[str, Any]) -> bytes:
    """Encode with an explicit writer schema (used for compatibility tests and tools)."""
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(ws.fingerprint)
    fastavro.schemaless_writer(buf, ws.parsed, record)
    return buf.getvalue()


def peek_fingerprint(data: bytes) -> bytes:
    """The writer fingerprint of a single-object record, or DecodeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < HEADER_LEN:
        raise DecodeError("undecodable", f"record too short ({len(data) if data is not None else 0} bytes) for Avro single-object encoding")
    if bytes(data[:2]) != MAGIC:
        raise DecodeError("undecodable", f"bad magic {bytes(data[:2]).hex()} (expected c301, Avro single-object encoding)")
    return bytes(data[2:HEADER_LEN])


def with_standard_header(data: bytes, *, reg: SchemaRegistry | None = None) -> bytes:
    """``data`` with its header in the standard byte order (a legacy header rewritten, the body
    untouched), for records handed to readers outside ledgerstream such as bundles."""
    writer = (reg or registry()).by_fingerprint(peek_fingerprint(data))
    if writer is None:
        raise DecodeError("unknown_schema", f"unknown writer schema fingerprint {bytes(data[2:HEADER_LEN]).hex()}")
    if bytes(data[2:HEADER_LEN]) == writer.fingerprint:
        return bytes(data)
    return MAGIC + writer.fingerprint + bytes(data[HEADER_LEN:])


def decode(data: bytes, *, expect: str | tuple[str, ...] | None = None,
           reg: SchemaRegistry | None = None) -> tuple[str, dict[str, Any]]:
    """Decode a single-object record; returns (record name, record).

    The writer schema is found by fingerprint and resolved against the current reader
    schema of the same name. ``expect`` restricts the accepted record names. Any
    problem raises :class:`DecodeError` with a reason code
    (``undecodable``, ``unknown_schema``, ``unexpected_type``).
    """
    reg = reg or registry()
    fp = peek_fingerprint(data)
    writer = reg.by_fingerprint(fp)
    if writer is None:
        raise DecodeError("unknown_schema", f"unknown writer schema fingerprint {fp.hex()}")
    if expect is not None:
        allowed = (expect,) if isinstance(expect, str) else expect
        if writer.name not in allowed:
            raise DecodeError("unexpected_type", f"got a {writer.name} record, expected {' or '.join(allowed)}")
    reader = reg.schema(writer.name)
    body = io.BytesIO(bytes(data[HEADER_LEN:]))
    try:
        if writer.fingerprint == reader.fingerprint:
            record = fastavro.schemaless_reader(body, writer.parsed, None)
        else:
            record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
    except Exception as exc:  # fastavro raises many kinds on corrupt input
        raise DecodeError("undecodable", f"corrupt {writer.name} body: {type(exc).__name__}: {exc}") from None
    if body.tell() != len(data) - HEADER_LEN:
        raise DecodeError("undecodable", f"{len(data) - HEADER_LEN - body.tell()} trailing bytes after the {writer.name} record")
    return writer.name, record


def decode_as_written(data: bytes, schemas: dict[bytes, Any]) -> tuple[str, dict[str, Any]]:
    """Decode a single-object record with its own writer schema only, from ``schemas``
    (parsed schemas by header bytes, e.g. a bundle's), with no resolution, so the record is
    exactly what was written; returns (short record name, record)."""
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise DecodeError("undecodable", "not Avro single-object encoding (magic c301 missing)")
    fp = bytes(data[2:HEADER_LEN])
    writer = schemas.get(fp)
    if writer is None:
        raise DecodeError("unknown_schema", f"no given schema with fingerprint {fp.hex()}")
    body = io.BytesIO(bytes(data[HEADER_LEN:]))
    try:
        record = fastavro.schemaless_reader(body, writer, None)
    except Exception as exc:  # fastavro raises many kinds on corrupt input
        raise DecodeError("undecodable", f"corrupt body: {type(exc).__name__}: {exc}") from None
    if body.tell() != len(data) - HEADER_LEN:
        raise DecodeError("undecodable", f"{len(data) - HEADER_LEN - body.tell()} trailing bytes")
    return writer["name"].rsplit(".", 1)[-1], record


def schema_path() -> Path:
    """Folder of the shipped .avsc files (for docs and third-party tools)."""
    return Path(str(resources.files("ledgerstream.schemas")))
