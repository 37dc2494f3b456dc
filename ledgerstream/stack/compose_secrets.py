"""Generate docker-compose.yml's Kafka security material once (the ``secrets-init`` service).

Layout under ``--out`` (each folder is its own Docker volume, so a container mounts only
its role's credentials):

- ``kafka/``: ``sasl.json`` (every password), the broker's PEM key store, ``ca.pem``,
  ``server.properties`` (SASL_SSL listener, SCRAM, StandardAuthorizer, no ACL = no access)
  and ``admin-scram`` (the ``kafka-storage format --add-scram`` argument).
- ``<role>/``: ``<role>.properties`` (librdkafka: SASL_SSL, SCRAM-SHA-512, user, password,
  ``ssl.ca.location``) and ``ca.pem``, for each role of ``core.kafka_security.ROLES``.

Existing material is kept (passwords and certificates survive ``docker compose up``).
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from ledgerstream.core.kafka_security import ROLES
from ledgerstream.stack.security import SECRETS_FILE, BrokerSecurity
from ledgerstream.stack.tls import TlsFiles, ensure_broker_tls

#: where the kafka container mounts the ``kafka/`` folder and clients mount their role's
KAFKA_MOUNT = "/etc/kafka/ledgerstream"
CLIENT_MOUNT = "/kafka-client"


def compose_server_properties(security: BrokerSecurity, host: str, cluster_dir: str) -> dict[str, str]:
    """The compose broker's server.properties (paths as the kafka container sees them)."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": "1@kafka:9093",
        "listeners": f"{security.protocol}://:9094,CONTROLLER://:9093",
        "advertised.listeners": f"{security.protocol}://{host}:9094",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": cluster_dir,
        "auto.create.topics.enable": "false",
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(8 * 1024 * 1024),
        **security.broker_properties(),
    }


def generate(out: Path, broker_hosts: list[str], ca_location: str = f"{CLIENT_MOUNT}/ca.pem",
             kafka_mount: str | None = None, log_dirs: str = "/var/lib/kafka/data",
             owners: dict[str, int] | None = None) -> dict[str, Path]:
    """Create (or keep) every file; returns role -> properties path. ``kafka_mount``: the
    ``kafka/`` folder's path inside the broker (default: where it is written)."""
    kafka_dir = out / "kafka"
    kafka_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tls = ensure_broker_tls(kafka_dir, broker_hosts)
    mount = Path(kafka_mount) if kafka_mount else kafka_dir
    security = BrokerSecurity.load_or_create(kafka_dir / SECRETS_FILE,
                                             TlsFiles(mount / tls.ca_cert.name, mount / tls.keystore.name))
    props = compose_server_properties(security, broker_hosts[0], log_dirs)
    (kafka_dir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (kafka_dir / "admin-scram").write_text(security.format_arguments()[1] + "\n")
    for name in ("server.properties", "admin-scram"):
        os.chmod(kafka_dir / name, 0o600)
    paths = {}
    for role in ROLES:
        folder = out / role
        paths[role] = Path(security.write_client_configs(folder, [role], ca_location)[role])
        shutil.copyfile(tls.ca_cert, folder / "ca.pem")
    for folder, uid in (owners or {}).items():
        for path in [out / folder, *(out / folder).iterdir()]:
            os.chown(path, uid, uid)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate Kafka SASL_SSL credentials, certificates and "
                                                 "broker settings for docker-compose.yml (kept if present).")
    parser.add_argument("--out", type=Path, required=True, help="folder holding one sub-folder per volume")
    parser.add_argument("--broker-host", action="append", default=[],
                        help="name clients use for the broker (repeatable; the first is advertised) [kafka]")
    parser.add_argument("--kafka-uid", type=int, default=1000, help="owner of kafka/ (the apache/kafka image's user)")
    parser.add_argument("--client-uid", type=int, default=10001, help="owner of the role folders (ledgerstream's user)")
    args = parser.parse_args(argv)
    owners = {"kafka": args.kafka_uid, **{role: args.client_uid for role in ROLES}} if os.geteuid() == 0 else None
    paths = generate(args.out, args.broker_host or ["kafka"], kafka_mount=KAFKA_MOUNT, owners=owners)
    print(f"Kafka credentials ready for roles {', '.join(paths)} in {args.out}")


if __name__ == "__main__":
    main()
