"""``show``, ``prove`` and ``checkpoints``: read the ledger, print entries and proofs."""
from __future__ import annotations

import base64
from pathlib import Path

import click

from ledgerstream.cli.common import (EXIT_FAILED, bootstrap_option, fail, home_option, info, json_option,
                                     print_json, resolve_home, safe_text)
from ledgerstream.core import config, mldsa, records
from ledgerstream.tools import ledger_answers as answers
from ledgerstream.tools.ledger_snapshot import entry_json


def _where(home: Path | None, bootstrap: str | None) -> tuple[Path, str, config.Topics]:
    home_dir = resolve_home(home)
    return home_dir, config.resolve_bootstrap(bootstrap, home_dir), config.resolve_topics(home_dir)


wait_option = click.option(
    "--wait", type=click.FloatRange(min=0), default=answers.DEFAULT_WAIT, show_default=True,
    help="Seconds to wait while the ledger index catches up with a committed entry (only while "
         "its follower runs); an answer is never given from an index that lags.")


def _public_key_for(home_dir: Path, key_id: str) -> mldsa.PublicKey | None:
    """The trusted signer key with this key_id, from HOME/keys (signer.pub.pem, trusted/*.pem)."""
    keys_dir = home_dir / "keys"
    candidates = [keys_dir / "signer.pub.pem", *sorted((keys_dir / "trusted").glob("*.pem"))]
    for path in candidates:
        if path.exists():
            pub = mldsa.load_public_key(path.read_bytes())
            if pub.key_id == key_id:
                return pub
    return None


@click.command()
@click.option("--seq", type=click.IntRange(min=0), required=True, help="Sequence number of the entry.")
@wait_option
@home_option
@bootstrap_option
@json_option
def show(seq: int, wait: float, home: Path | None, bootstrap: str | None, as_json: bool) -> None:
    """Show one ledger entry with its signature and the exact bytes that were signed.

    Reads the ledger index (one row, one record fetched by offset) when HOME has one,
    else the whole entries topic."""
    home_dir, server, topics = _where(home, bootstrap)
    try:
        entry, offset = answers.entry(home_dir, server, topics, seq, wait=wait, note=info)
    except LookupError as exc:
        fail(str(exc), EXIT_FAILED)
    h = bytes(entry["entry_hash"])
    pub = _public_key_for(home_dir, entry["key_id"])
    out = entry_json(entry)
    out.update({
        "public_key_hex": pub.raw.hex() if pub else None,
        "signature_hex": bytes(entry["signature"]).hex() if entry.get("signature") else None,
        "signed_message_hex": records.entry_signing_message(h).hex(),
        "entry_hash_input_hex": records.entry_hash_input(entry).hex(),
        "offset": offset,
    })
    if as_json:
        print_json(out)
        return
    a = entry["action"]
    click.echo(safe_text(f"seq {seq}  {a['action_type']}  agent {a['agent_id']}  event {a['event_id']}"))
    click.echo(f"entry_hash {h.hex()}\nprev_hash  {bytes(entry['prev_hash']).hex()}")
    click.echo(safe_text(f"agent_seq {entry['agent_seq']}  key_id {entry['key_id']}"))
    click.echo(safe_text(f"payload {out['action'].get('payload')}"))


@click.group()
def prove() -> None:
    """RFC 9162 inclusion and consistency proofs against the ledger's Merkle tree."""


@prove.command()
@click.option("--seq", type=click.IntRange(min=0), required=True, help="Entry to prove.")
@click.option("--tree-size", type=click.IntRange(min=1), default=None,
              help="Tree size to prove against [default: the newest verified checkpoint (index), else the latest "
                   "checkpoint that covers the entry].")
@wait_option
@home_option
@bootstrap_option
@json_option
def inclusion(seq: int, tree_size: int | None, wait: float, home: Path | None, bootstrap: str | None,
              as_json: bool) -> None:
    """Audit path proving entry SEQ is leaf SEQ of the tree of TREE_SIZE entries (from the
    index's tiles when HOME has an index, else from the whole topic)."""
    try:
        out = answers.inclusion(*_where(home, bootstrap), seq, tree_size, wait=wait, note=info)
    except LookupError as exc:
        fail(str(exc), EXIT_FAILED)
    _emit(out, as_json)


@prove.command()
@click.option("--from", "first", type=click.IntRange(min=1), required=True, help="Older tree size (>= 1).")
@click.option("--to", "second", type=click.IntRange(min=1), required=True, help="Newer tree size (>= FROM).")
@wait_option
@home_option
@bootstrap_option
@json_option
def consistency(first: int, second: int, wait: float, home: Path | None, bootstrap: str | None,
                as_json: bool) -> None:
    """Proof that the tree of FROM entries is a prefix of the tree of TO entries (from the
    index's tiles when HOME has an index, else from the whole topic)."""
    if first > second:
        raise click.UsageError(f"--from {first} is larger than --to {second}")
    try:
        out = answers.consistency(*_where(home, bootstrap), first, second, wait=wait, note=info)
    except LookupError as exc:
        fail(str(exc), EXIT_FAILED)
    _emit(out, as_json)


def _emit(out: dict, as_json: bool) -> None:
    if as_json:
        print_json(out)
    else:
        for k, v in out.items():
            click.echo(safe_text(f"{k}: {v}"))


@click.group()
def checkpoints() -> None:
    """List signed checkpoints (tree heads) and export one for offline checks."""


@checkpoints.command("list")
@home_option
@bootstrap_option
@json_option
def list_(home: Path | None, bootstrap: str | None, as_json: bool) -> None:
    """Every checkpoint, oldest first, with its anchoring state: with a ledger index, the
    verified ones only; without, every record on the topic."""
    rows = answers.checkpoints(*_where(home, bootstrap), note=info)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        click.echo(f"{r['tree_size']:>10}  {r['root_hash'][:16]}…  "
                   f"{'anchored' if r['anchored'] else 'NOT anchored yet'}")


@checkpoints.command("export")
@click.option("--tree-size", type=click.IntRange(min=1), required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder to write into.")
@wait_option
@home_option
@bootstrap_option
def export(tree_size: int, out_dir: Path, wait: float, home: Path | None, bootstrap: str | None) -> None:
    """Write the checkpoint body, its token, the TSA CA, the signature and the public key,
    and checkpoint.note: the C2SP signed note with the log's Ed25519 and ML-DSA-65 lines and
    the verified witness cosignatures (docs/spec.md section 6), which `go`'s sumdb/note,
    witnesses and monitors read. Only a checkpoint signed by a trusted key (HOME/keys) is
    exported (exit 1 otherwise).

    Then, by hand: openssl ts -verify -data DIR/checkpoint -in DIR/checkpoint.tsr -CAfile DIR/tsa-ca.pem
    """
    home_dir = resolve_home(home)
    try:
        c, anchors, signed_note = answers.checkpoint(*_where(home, bootstrap), tree_size, wait=wait, note=info)
    except LookupError as exc:
        fail(str(exc), EXIT_FAILED)
    body = bytes(c["body"])
    pub = _public_key_for(home_dir, c["key_id"])
    try:
        if pub is None:
            raise mldsa.InvalidSignature(f"key_id {c['key_id']} is not among the trusted keys under {home_dir / 'keys'}")
        pub.verify(bytes(c["signature"]), body)
    except mldsa.InvalidSignature as exc:
        fail(f"the checkpoint of tree size {tree_size} is not signed by a trusted key: {exc}", EXIT_FAILED)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "checkpoint").write_bytes(body)
    (out_dir / "checkpoint.sig").write_bytes(bytes(c["signature"]))
    (out_dir / "checkpoint.note").write_bytes(signed_note)
    (out_dir / "signer.pub.pem").write_bytes(mldsa.public_key_pem(pub))
    (out_dir / "signer.pub.raw").write_bytes(pub.raw)
    if anchors:
        (out_dir / "checkpoint.tsr").write_bytes(bytes(anchors[0]["timestamp"]["token"]))
        for i, a in enumerate(anchors[1:], start=2):
            (out_dir / f"checkpoint.{i}.tsr").write_bytes(bytes(a["timestamp"]["token"]))
    else:
        info("warning: this checkpoint has no RFC 3161 token yet (TSA backlog); checkpoint.tsr not written")
    ca = home_dir / "tsa" / "ca.pem"
    if ca.exists():
        (out_dir / "tsa-ca.pem").write_bytes(ca.read_bytes())
    info(f"wrote {out_dir}: checkpoint ({len(body)} bytes, root {base64.b64encode(bytes(c['root_hash'])).decode()})")
