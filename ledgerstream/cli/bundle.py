"""``ledgerstream export bundle`` and ``ledgerstream verify-bundle``: evidence for third parties.

Exit status: 0 ok, 1 verification failed (or the selection cannot be exported as
verifiable evidence), 2 usage or environment error.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from ledgerstream.cli.common import EXIT_FAILED, bootstrap_option, home_option, info
from ledgerstream.cli.selection import exit_code, load_selection, selection_options
from ledgerstream.core.errors import ConfigError


@click.command("bundle")
@selection_options
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="ZIP file to write.")
@click.option("--redact-payloads", is_flag=True,
              help="Keep payload_hash but drop payload and salt (everything still verifies).")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Policy file whose approvals section names the approvers, bundled when entries carry "
                   "approvals [default: HOME/policy.yaml|yml|json if present].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@bootstrap_option
@home_option
def export_bundle(out: Path, redact_payloads: bool, policy: Path | None, as_json: bool, bootstrap: str | None,
                  home: Path | None, **opts: Any) -> None:
    """Write a self-contained, offline-verifiable evidence bundle of the selected entries.

    The ZIP holds the entries as written (plus JSON renderings), the signed checkpoint that
    covers them with its RFC 3161 token(s), an inclusion proof per entry, consistency
    proofs from the checkpoints that first published them, the signer key(s), the TSA CA,
    the Avro schemas and, when entries carry approvals, the approver keys (docs/bundle-format.md).
    Entries failing verification are refused.
    """
    from ledgerstream.core.verify import load_approvers
    from ledgerstream.core.verify.trust import NoteTrust
    from ledgerstream.tools.bundle_export import ExportError, export_bundle as build

    result = load_selection(opts, home, bootstrap)
    if result["tsa_ca"] is None:
        raise ConfigError("a bundle needs the TSA CA: pass --tsa-ca PEM (dev stack: HOME/tsa/ca.pem)")
    try:
        done = build(result["ledger"], result["reports"], result["keys"], result["tsa_ca"], result["selection"],
                     out, redact=redact_payloads, approvers=load_approvers(result["home"], policy),
                     notes=NoteTrust.load(result["home"]))
    except ExportError as exc:
        info(f"error: {exc}")
        for problem in exc.problems:
            info(f"  {problem}")
        raise SystemExit(EXIT_FAILED) from None
    doc = {"ok": True, "out": str(done.path), "entries": done.entries, "members": done.members,
           "checkpoint_size": done.checkpoint_size, "earlier_checkpoints": done.earlier_checkpoints,
           "key_ids": done.key_ids, "manifest_sha256": done.manifest_sha256, "bundle_sha256": done.bundle_sha256,
           "redacted_payloads": redact_payloads}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    info(f"wrote {done.path}: {done.entries} entries, checkpoint {done.checkpoint_size}"
         + (f" (+ earlier {', '.join(map(str, done.earlier_checkpoints))})" if done.earlier_checkpoints else "")
         + (", payloads redacted" if redact_payloads else ""))
    info(f"signer key id(s): {', '.join(done.key_ids)}")
    click.echo(f"manifest sha256: {done.manifest_sha256}")
    click.echo(f"bundle sha256:   {done.bundle_sha256}")
    info("record the manifest sha256 with the case: it identifies this bundle's content")


@click.command("verify-bundle")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pin the signer public key PEM (repeatable); without it the bundle's own keys are trusted.")
@click.option("--tsa-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Pin the TSA CA PEM; without it the bundle's tsa-ca.pem is trusted.")
@click.option("--require-pinned", is_flag=True,
              help="Fail unless the signer key is pinned with --trusted-key (a bundle re-signed end to end with "
                   "another key verifies against its own keys).")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Pin the approvers (this policy file's approvals section); without it the bundle's "
                   "approvers.json is trusted.")
@click.option("--witnesses", "witnesses_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Pin the witnesses and their quorum (a witnesses.json: {\"quorum\": k, "
                                 "\"witnesses\": [{\"vkey\": ...}]}); without it the bundle's witnesses.json is "
                                 "trusted. The checkpoint must then carry k verified cosignatures.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def verify_bundle(bundle: Path, trusted_keys: tuple[Path, ...], tsa_ca: Path | None, require_pinned: bool,
                  policy: Path | None, witnesses_path: Path | None, as_json: bool) -> None:
    """Verify an evidence bundle offline (no Kafka): manifest, hashes, signatures, proofs, tokens.

    Any modified, missing or added byte fails, with the check and member that failed.
    Exit status: 0 the bundle verifies, 1 it does not, 2 usage error.
    """
    from ledgerstream.producers.policy import Policy
    from ledgerstream.tools.bundle_verify import verify_bundle as verify

    from ledgerstream.core.verify.trust import load_witnesses

    approvers = Policy.from_file(policy).approvers if policy else None
    witnesses = None
    if witnesses_path is not None:
        pinned, quorum = load_witnesses(witnesses_path.parent, witnesses_path)
        witnesses = ([w.verifier for w in pinned], quorum)
    if policy and approvers is None:
        raise ConfigError(f"{policy} has no approvals section: nothing to pin")
    try:
        report = verify(bundle, trusted_keys=[_read_pem(p) for p in trusted_keys] if trusted_keys else None,
                        tsa_ca_pem=_read_pem(tsa_ca) if tsa_ca else None, require_pinned=require_pinned,
                        approvers=approvers, witnesses=witnesses)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc}") from exc
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _render(Console(), report.to_json(), pinned=bool(trusted_keys), ca_pinned=tsa_ca is not None)
    exit_code(report.ok)


_MAX_PEM_BYTES = 1 << 20  # a key is ~2.7 KB and a CA chain a few KB; anything larger is not a PEM we read


def _read_pem(path: Path) -> bytes:
    """A pinned key or CA file, refused (exit 2) when larger than any real PEM."""
    with path.open("rb") as fh:
        data = fh.read(_MAX_PEM_BYTES + 1)
    if len(data) > _MAX_PEM_BYTES:
        raise ConfigError(f"{path} is larger than {_MAX_PEM_BYTES} bytes: not a PEM key or certificate file")
    return data


def _render(console: Console, doc: dict[str, Any], *, pinned: bool, ca_pinned: bool) -> None:
    cp = doc["checkpoint"] or {}
    if cp:
        console.print(f"checkpoint {cp['tree_size']} of {cp['origin']!r}, root {cp['root'][:16]}…, "
                      + ", ".join(f"timestamped {t['gen_time']} by {t['tsa']}" for t in cp.get("timestamps", [])))
    for k in doc["keys"]:
        console.print(f"signer key {k['key_id']} ({k['source']})")
    if doc.get("approvers"):
        a = doc["approvers"]
        console.print(f"approvers: {a['m']} of {', '.join(a['approvers'])} ({a['source']})")
    if doc.get("witnesses"):
        w = doc["witnesses"]
        names = ", ".join(f"{c['witness']} ({c['key_type']})" for c in w["cosignatures"]) or "none"
        console.print(f"witnesses ({w['source']}): cosigned by {names}; quorum {w['quorum']}: "
                      + ("WITNESSED" if w["witnessed"] else "not witnessed"))
    if doc["tsa_ca"]:
        console.print(f"TSA CA sha256 {doc['tsa_ca']['sha256']} ({doc['tsa_ca']['source']}): "
                      + "; ".join(doc["tsa_ca"]["subjects"]))
    if pinned:
        console.print("signer key: PINNED (--trusted-key)")
    else:
        console.print("[bold yellow]signer key: NOT PINNED[/] — trusted because the bundle carries it; compare the "
                      "key id above with one obtained independently, or pass --trusted-key (--require-pinned "
                      "makes this an error)")
    if not ca_pinned:
        console.print("[yellow]TSA CA: not pinned, taken from the bundle (pin it with --tsa-ca)[/]")
    for name, counts in doc["checks"].items():
        if counts["passed"] or counts["failed"]:
            style = "bold red" if counts["failed"] else "green"
            console.print(Text.assemble(("✗ " if counts["failed"] else "✓ ", style),
                                        f"{name}: {counts['passed']} passed, {counts['failed']} failed"))
    for e in doc["errors"]:
        console.print(Text.assemble(("✗ ", "bold red"), f"{e['check']} {e['member']}: {e['detail']}"))
    console.print(f"manifest sha256: {doc['manifest_sha256']}")
    console.print(f"{doc['entries']} entries: " + ("[bold green]bundle verifies[/]" if doc["ok"]
                                                    else "[bold red]BUNDLE DOES NOT VERIFY[/]"))
