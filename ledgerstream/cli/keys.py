"""``ledgerstream keys``: create and inspect the ML-DSA-65 keys that sign ledger records."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ledgerstream.core import mldsa
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
@click.option("--force", is_flag=True, help="Replace OUT and OUT.pub if they exist.")
def generate(out: Path, backend: str | None, force: bool) -> None:
    """Create a new key pair: OUT (private, mode 0600) and OUT.pub (public).

    Prints the key_id and the public key path. Refuses to replace existing files
    unless --force is given, so a signing key is never lost by accident.
    """
    public_path = _public_path(out)
    existing = [str(p) for p in (out, public_path) if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise KeysError(f"{' and '.join(existing)} already {verb}; use --force to replace")
    try:
        key = mldsa.PrivateKey.generate(backend)
        mldsa.save_private_key(key, out, overwrite=force)
        public_path.write_bytes(mldsa.public_key_pem(key.public_key()))
    except (LedgerstreamError, OSError) as exc:
        raise KeysError(str(exc)) from exc
    click.echo(f"key_id: {key.public_key().key_id}")
    click.echo(f"private key: {out}")
    click.echo(f"public key: {public_path}")


@keys.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def show(path: Path, as_json: bool) -> None:
    """Show the key_id and public key of PATH (a private or a public key PEM).

    "backend" is the backend this machine would use to sign (private key) or to
    verify (public key) with it.
    """
    try:
        data = path.read_bytes()
        if b"PRIVATE KEY-----" in data:
            kind, key = "private", mldsa.load_private_key(data)
            public, backend = key.public_key(), key.backend
        else:
            kind, public = "public", mldsa.load_public_key(data)
            backend = public.backend
    except (LedgerstreamError, OSError) as exc:
        raise KeysError(f"{path}: {exc}") from exc
    if as_json:
        click.echo(
            json.dumps(
                {
                    "algorithm": mldsa.ALGORITHM,
                    "key_id": public.key_id,
                    "public_key_hex": public.raw.hex(),
                    "backend": backend,
                }
            )
        )
        return
    click.echo(f"{path}: {mldsa.ALGORITHM} {kind} key")
    click.echo(f"key_id: {public.key_id}")
    click.echo(f"backend: {backend}")
    click.echo(f"public_key_hex: {public.raw.hex()}")
