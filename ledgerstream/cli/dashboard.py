"""``ledgerstream dashboard``: serve the read-only verifier dashboard in the foreground."""
from __future__ import annotations

from pathlib import Path

import click

from ledgerstream.cli.alerts import resolve_trusted_verifiers, trusted_verifier_key_option
from ledgerstream.cli.common import bootstrap_option, home_option, info, resolve_home
from ledgerstream.tools.dashboard.settings import DEFAULT_PORT, TOKEN_ENV


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@home_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; a non-loopback address needs a token (refused with --no-token).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535), help="Port to bind.")
@click.option("--token", default=None, envvar=TOKEN_ENV, show_envvar=True,
              help="Require this token (at least 16 characters) for every page and API call.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the token from this file, creating it (0600) with a random token if absent "
                   "[HOME/dashboard/token].")
@click.option("--no-token", is_flag=True, help="Serve without a token (loopback addresses only).")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Also accept this Host header name (repeatable); others get 403 (DNS rebinding).")
@click.option("--topic-prefix", default=None, help="Topic name prefix [the dev stack's].")
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Signer public key PEM (repeatable) [HOME/keys/signer.pub.pem].")
@click.option("--tsa-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="TSA CA bundle PEM for RFC 3161 tokens [HOME/tsa/ca.pem, dev only].")
@click.option("--tiles-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The index's C2SP tiles, served under /tlog/ [HOME/tiles].")
@trusted_verifier_key_option
@bootstrap_option
def dashboard(home: Path | None, host: str, port: int, token: str | None, token_file: Path | None, no_token: bool,
              allowed_hosts: tuple[str, ...], topic_prefix: str | None, public_keys: tuple[Path, ...],
              tsa_ca: Path | None, tiles_dir: Path | None, trusted_verifier_keys: tuple[str, ...],
              bootstrap: str | None) -> None:
    """Serve the verifier dashboard: ledger head, checkpoints, verifiers, live alerts,
    agents, the cross-agent call graph and per-entry verification (docs/dashboard.md).

    Read-only; binds 127.0.0.1 by default and requires a token (generated on first start
    into HOME/dashboard/token; open the printed URL once). Ctrl-C stops it.
    """
    from ledgerstream.tools.dashboard import settings
    from ledgerstream.tools.dashboard.app import serve

    resolve_trusted_verifiers(resolve_home(home), trusted_verifier_keys)  # a bad key is a usage error; warns on none
    s = settings.resolve(home=home, host=host, port=port, token=token, bootstrap=bootstrap,
                         topic_prefix=topic_prefix, public_keys=public_keys, tsa_ca=tsa_ca,
                         token_path=token_file, no_token=no_token, allowed_hosts=allowed_hosts,
                         verifier_keys=trusted_verifier_keys, tiles_dir=tiles_dir)
    if s.token is None:
        info("serving WITHOUT a token (--no-token): every local user and process can read the dashboard")
    shown_host = f"[{host}]" if ":" in host else host
    info(f"dashboard on http://{shown_host}:{port}/ (Ctrl-C stops); "
         + ("token: see --token-file / HOME/dashboard/token" if s.token else "no token"))
    serve(s)
