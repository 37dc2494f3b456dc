"""``ledgerstream witness``: our post-quantum witness (``serve``), the client that gets each
checkpoint cosigned (``client``), and the witnesses' status (``status``)."""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import click

from ledgerstream.cli.common import bootstrap_option, home_option, json_option, print_json, resolve_home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def witness() -> None:
    """Witnessed checkpoints (c2sp.org/tlog-witness, docs/witnesses.md).

    A witness cosigns a checkpoint only if it is consistent with every checkpoint of that log
    it cosigned before, so a signer cannot show two histories (a split view) to two parties
    that each check for a quorum of cosignatures. Witnesses are configured in
    HOME/witnesses.json: {"quorum": k, "witnesses": [{"vkey": "...", "url": "http://..."}]}.
    """


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


@witness.command()
@click.option("--name", required=True, help="The witness's key name, a schema-less URL (e.g. witness.example/pq1).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Its ML-DSA-65 private key PEM; created (mode 0600) if it does not exist.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where it keeps the newest checkpoint it cosigned per log (fsynced before each answer).")
@click.option("--log-vkey", "log_vkeys", multiple=True, required=True,
              help="A log's note verifier key (Ed25519 or ledgerstream ML-DSA-65; its name is the origin). Repeatable.")
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="host:port to listen on (port 0: any free).")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write host:port here once listening.")
def serve(name: str, key_path: Path, state_dir: Path, log_vkeys: tuple[str, ...], listen: str,
          ready_file: Path | None) -> None:
    """Run a tlog-witness that cosigns with ML-DSA-65 (foreground; SIGTERM stops it).

    Prints its vkey (to put in a log's witnesses.json) and serves POST /add-checkpoint and
    GET /vkey.
    """
    from ledgerstream.core import mldsa, note
    from ledgerstream.core.errors import LedgerstreamError
    from ledgerstream.witness.server import Witness, serve as run_server
    from ledgerstream.witness.state import WitnessState

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected host:port", param_hint="--listen")
    try:
        note.check_name(name)
        if not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            mldsa.save_private_key(mldsa.PrivateKey.generate(), key_path)
        key = mldsa.load_private_key(key_path)
        logs = note.load_vkeys("\n".join(log_vkeys), "--log-vkey")
        w = Witness(note.NoteSigner(name, note.MLDSA65_COSIGNATURE, ml_dsa=key), logs, WitnessState(state_dir))
    except (LedgerstreamError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"vkey: {w.signer.verifier.vkey}")
    (state_dir / "witness.vkey").write_text(w.signer.verifier.vkey + "\n")
    sys.stdout.flush()
    run_server(w, host, int(port), _stop_event(), ready_file)


@witness.command()
@click.option("--once", is_flag=True, help="One pass over the witnesses, then exit (exit 1 if any failed).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between passes.")
@click.option("--witnesses", "witnesses_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Witness file [HOME/witnesses.json].")
@bootstrap_option
@home_option
def client(once: bool, interval: float, witnesses_path: Path | None, bootstrap: str | None,
           home: Path | None) -> None:
    """Get each new verified checkpoint cosigned by the configured witnesses and commit the
    cosignatures to the checkpoints topic (foreground; SIGTERM stops it). Needs the ledger
    index (ledgerstream index run): proofs come from its tiles."""
    from confluent_kafka import Producer

    from ledgerstream.core import config as core_config
    from ledgerstream.core.errors import LedgerstreamError
    from ledgerstream.core.kafka_security import kafka_config
    from ledgerstream.core.verify import checker_config
    from ledgerstream.core.verify.trust import load_witnesses
    from ledgerstream.index.paths import IndexPaths
    from ledgerstream.index.reads import IndexedLedger
    from ledgerstream.witness.client import WitnessClient, status_file

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home_dir = resolve_home(home)
    try:
        server = core_config.resolve_bootstrap(bootstrap, home_dir)
        topics = core_config.resolve_topics(home_dir)
        witnesses, _ = load_witnesses(home_dir, witnesses_path)
        config = checker_config(home_dir, witnesses_path=witnesses_path)
        producer = Producer(kafka_config(server, "witness", {"enable.idempotence": True, "acks": "all"},
                                         home_dir=home_dir))
    except LedgerstreamError as exc:
        raise click.ClickException(str(exc)) from exc
    if not [w for w in witnesses if w.url]:
        raise click.ClickException(f"no witness with a url in {witnesses_path or home_dir / 'witnesses.json'}")

    def commit(value: bytes) -> None:
        errors: list = []
        producer.produce(topics.checkpoints, value, on_delivery=lambda err, _msg: err and errors.append(err))
        if producer.flush(30) or errors:
            raise RuntimeError(f"could not write a cosignature to {topics.checkpoints}: {errors or 'timeout'}")

    wc = WitnessClient(witnesses, config, commit)
    stop = _stop_event()
    status_path = status_file(home_dir)
    status_path.parent.mkdir(parents=True, exist_ok=True)
    while not stop.is_set():
        ledger = IndexedLedger.open(IndexPaths.of(home_dir), server, topics, config)
        if ledger is None:
            logging.getLogger("ledgerstream.witness.client").info("no ledger index yet in %s", home_dir / "index")
        else:
            try:
                wc.step(ledger)
            finally:
                ledger.close()
        views = [v.status() for v in wc.views.values()]
        tmp = status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"updated": time.time(), "witnesses": views}, indent=1))
        tmp.replace(status_path)
        if once:
            sys.exit(1 if any(v["last_error"] for v in views) else 0)
        stop.wait(interval)


@witness.command()
@json_option
@home_option
def status(as_json: bool, home: Path | None) -> None:
    """The witness client's view: per witness, the size it cosigned and its last error."""
    from ledgerstream.witness.client import status_file

    path = status_file(resolve_home(home))
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise click.ClickException(f"no witness client status in {path}: is 'ledgerstream witness client' running?")
    if as_json:
        print_json(data)
        return
    for w in data["witnesses"]:
        click.echo(f"{w['name']:<32} size {w['size']:>8}  cosigned {w['cosigned']:>5}  {w['last_error'] or 'ok'}")
