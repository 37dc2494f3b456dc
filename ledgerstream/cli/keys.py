"""``ledgerstream keys``: create and inspect the keys that sign ledger records and checkpoints."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ledgerstream.core import config, mldsa, note
from ledgerstream.core.errors import LedgerstreamError


class KeysError(click.ClickException):
    """Usage or environment problem: exit status 2, as everywhere in the CLI."""

    exit_code = 2


def _public_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def keys() -> None:
    """Generate and inspect ML-DSA-65 signing keys (FIPS 204, pure, empty context).

    A private key file is PKCS#8 PEM holding the 32-byte FIPS 204 seed (mode 0600);
    the public key file beside it (PATH.pub) is SubjectPublicKeyInfo PEM. A key is
    named by its key_id: the lowercase hex SHA-256 of the raw 1952-byte public key.

    Each ML-DSA-65 key has an Ed25519 partner, NAME-ed25519.pem, that signs the standard
    C2SP signed-note line of every checkpoint (so existing witnesses and note verifiers can
    check it), and a NAME.vkey file with both note verifier keys (docs/spec.md section 6).

    Backends: "liboqs" (fast, if its shared library is installed, see
    scripts/install_liboqs.sh) else "pyca" (the cryptography package). Both give the
    same keys and interoperable signatures; $LEDGERSTREAM_MLDSA_BACKEND picks one.
    """


@keys.command()
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key file to write; the public key goes to OUT.pub.",
)
@click.option(
    "--backend",
    type=click.Choice(mldsa.BACKENDS),
    default=None,
    help="Backend to generate with (default: $LEDGERSTREAM_MLDSA_BACKEND or the fastest available).",
)
@click.option("--origin", default=config.DEFAULT_ORIGIN, show_default=True,
              help="The log's origin: the key name of its checkpoint notes (in OUT's .vkey file).")
@click.option("--force", is_flag=True, help="Replace the files if they exist.")
def generate(out: Path, backend: str | None, origin: str, force: bool) -> None:
    """Create a new key pair: OUT (ML-DSA-65 private, mode 0600), OUT.pub (public), its
    Ed25519 note key (OUT without .pem + "-ed25519.pem", 0600) and the vkey file (".vkey").

    Prints the key_id, the paths and the vkeys. Refuses to replace existing files
    unless --force is given, so a signing key is never lost by accident.
    """
    try:
        note.check_name(origin)
    except ValueError as exc:
        raise KeysError(f"--origin: {exc}") from None
    public_path, ed_path, vkey_path = _public_path(out), note.ed25519_key_path(out), note.vkey_path(out)
    existing = [str(p) for p in (out, public_path, ed_path, vkey_path) if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise KeysError(f"{' and '.join(existing)} already {verb}; use --force to replace")
    try:
        key = mldsa.PrivateKey.generate(backend)
        mldsa.save_private_key(key, out, overwrite=force)
        public_path.write_bytes(mldsa.public_key_pem(key.public_key()))
        ed = note.generate_ed25519()
        _write_private(ed_path, note.ed25519_pem(ed))
        vkeys = note.log_verifiers(origin, key.public_key(), ed)
        vkey_path.write_text("".join(v.vkey + "\n" for v in vkeys))
    except (LedgerstreamError, OSError) as exc:
        raise KeysError(str(exc)) from exc
    click.echo(f"key_id: {key.public_key().key_id}")
    click.echo(f"private key: {out}")
    click.echo(f"public key: {public_path}")
    click.echo(f"note key (Ed25519): {ed_path}")
    click.echo(f"vkeys: {vkey_path}")
    for v in vkeys:
        click.echo(f"  {v.kind}: {v.vkey[:100]}{'...' if len(v.vkey) > 100 else ''}")


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key file readable by its owner only (created 0600, never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


@keys.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--origin", default=config.DEFAULT_ORIGIN, show_default=True,
              help="The log's origin, the key name in the vkeys.")
def show(path: Path, as_json: bool, origin: str) -> None:
    """Show the key_id and public key of PATH (a private or a public key PEM).

    "backend" is the backend this machine would use to sign (private key) or to
    verify (public key) with it. "checkpoint_vkey" is the Ed25519 note vkey of the key's
    NAME-ed25519.pem partner (null without one), "checkpoint_mldsa_vkey" the ML-DSA-65 one;
    both name the key by --origin.
    """
    try:
        data = path.read_bytes()
        if b"PRIVATE KEY-----" in data:
            kind, key = "private", mldsa.load_private_key(data)
            public, backend = key.public_key(), key.backend
        else:
            kind, public = "public", mldsa.load_public_key(data)
            backend = public.backend
        base = path.with_name(path.name.removesuffix(".pub"))
        ed_path, vkey_file = note.ed25519_key_path(base), note.vkey_path(base)
        ed = note.load_ed25519(ed_path.read_bytes(), str(ed_path)) if kind == "private" and ed_path.exists() else None
        vkeys = {v.kind: v.vkey for v in note.log_verifiers(note.check_name(origin), public, ed)}
        if ed is None and vkey_file.exists():  # a public key: its Ed25519 partner is in NAME.vkey
            vkeys.update((v.kind, v.vkey) for v in note.load_vkeys(vkey_file.read_text(), str(vkey_file))
                         if v.kind == note.ED25519 and v.name == origin)
    except (LedgerstreamError, OSError, ValueError) as exc:
        raise KeysError(f"{path}: {exc}") from exc
    if as_json:
        click.echo(
            json.dumps(
                {
                    "algorithm": mldsa.ALGORITHM,
                    "key_id": public.key_id,
                    "public_key_hex": public.raw.hex(),
                    "backend": backend,
                    "checkpoint_vkey": vkeys.get(note.ED25519),
                    "checkpoint_mldsa_vkey": vkeys[note.MLDSA65],
                }
            )
        )
        return
    click.echo(f"{path}: {mldsa.ALGORITHM} {kind} key")
    click.echo(f"key_id: {public.key_id}")
    click.echo(f"backend: {backend}")
    click.echo(f"public_key_hex: {public.raw.hex()}")
    click.echo(f"checkpoint_vkey: {vkeys.get(note.ED25519) or '(no NAME-ed25519.pem beside this key)'}")
    click.echo(f"checkpoint_mldsa_vkey: {vkeys[note.MLDSA65]}")
