"""The embedded broker's authentication and least-privilege ACLs (issue 19, D26).

SASL/SCRAM-SHA-512 on the client listener (SASL_PLAINTEXT: loopback only, see
docs/security.md for SASL_SSL in docker-compose.yml), SASL/PLAIN on the controller
listener (SCRAM credentials live in the metadata log, which a controller cannot read
before it is up), the KRaft ``StandardAuthorizer`` and no access where no ACL says so.

One principal per role of :data:`ledgerstream.core.kafka_security.ROLES`. Credentials are
generated once per dev home, kept 0600, and written as librdkafka properties files that
every client reads through :func:`ledgerstream.core.kafka_security.kafka_config`.
"""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.kafka_security import ROLES, write_properties
from ledgerstream.stack.tls import TlsFiles

MECHANISM = "SCRAM-SHA-512"
CONTROLLER_USER = "controller"
SECRETS_FILE = "sasl.json"
SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class BrokerSecurity:
    """Passwords of every principal (role users and the controller), kept in ``secrets_path``."""

    passwords: dict[str, str]
    secrets_path: Path
    #: SASL_SSL when set (docker-compose.yml); SASL_PLAINTEXT (loopback dev stack) otherwise
    tls: TlsFiles | None = None

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"

    @classmethod
    def load_or_create(cls, secrets_path: Path, tls: TlsFiles | None = None) -> "BrokerSecurity":
        """Read the dev home's passwords, generating any that are missing (0600 file)."""
        try:
            passwords = json.loads(secrets_path.read_text()) if secrets_path.exists() else {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the broker credentials {secrets_path}: {exc}") from exc
        wanted = [*ROLES, CONTROLLER_USER]
        if any(name not in passwords for name in wanted):
            passwords = {name: passwords.get(name) or secrets.token_urlsafe(24) for name in wanted}
            tmp = secrets_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(passwords, f, indent=2, sort_keys=True)
            os.replace(tmp, secrets_path)
        return cls(passwords, secrets_path, tls)

    # --- broker side ---------------------------------------------------------------------
    def broker_properties(self) -> dict[str, str]:
        """server.properties entries for the SASL listeners and the authorizer."""
        admin, ctl = self.passwords["admin"], self.passwords[CONTROLLER_USER]
        plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{CONTROLLER_USER}" '
                 f'password="{ctl}" user_{CONTROLLER_USER}="{ctl}";')
        scram = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin}";'
        protocol = self.protocol
        tls = {} if self.tls is None else {
            "ssl.keystore.type": "PEM", "ssl.keystore.location": str(self.tls.keystore),
            "ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.tls.ca_cert)}
        return {
            **tls,
            "listener.security.protocol.map": f"CONTROLLER:SASL_PLAINTEXT,{protocol}:{protocol}",
            "inter.broker.listener.name": protocol,
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            f"listener.name.{protocol.lower()}.sasl.enabled.mechanisms": MECHANISM,
            f"listener.name.{protocol.lower()}.{MECHANISM.lower()}.sasl.jaas.config": scram,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:admin;User:{CONTROLLER_USER}",
        }

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments creating the admin's SCRAM credential, which the
        broker itself needs for its inter-broker connections before any client can add users."""
        return ["--add-scram", f"{MECHANISM}=[name=admin,password={self.passwords['admin']}]"]

    # --- client side ---------------------------------------------------------------------
    def client_properties(self, role: str, ca_location: str | None = None) -> dict[str, str]:
        """librdkafka settings of ``role``; ``ca_location``: where the client sees ``ca.pem``."""
        props = {"security.protocol": self.protocol, "sasl.mechanism": MECHANISM,
                 "sasl.username": role, "sasl.password": self.passwords[role]}
        if self.tls is not None:
            props["ssl.ca.location"] = ca_location or str(self.tls.ca_cert)
        return props

    def write_client_configs(self, folder: Path, roles: list[str] | None = None,
                             ca_location: str | None = None) -> dict[str, str]:
        """One properties file per role (0600, folder 0700); returns role -> path."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        out = {}
        for role in roles or list(ROLES):
            path = folder / f"{role}.properties"
            write_properties(path, self.client_properties(role, ca_location))
            out[role] = str(path)
        return out


def ensure_users(admin_config: dict[str, str], security: BrokerSecurity, timeout: float = 30.0) -> None:
    """Create or update the SCRAM credential of every role (idempotent; the admin's is formatted)."""
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)

    admin = AdminClient(admin_config)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts = [UserScramCredentialUpsertion(role, info, security.passwords[role].encode())
               for role in ROLES if role != "admin"]
    for user, future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except Exception as exc:
            raise ConfigError(f"cannot create the Kafka user {user}: {exc}") from exc


def _prefix(topics: Topics) -> str:
    entries = topics.entries
    return entries[: -len("entries")] if entries.endswith("entries") else ""


def acl_rules(topics: Topics) -> list[tuple[str, str, str, str, str]]:
    """(principal, resource type, pattern type, name, operation): every ALLOW the stack grants.

    Consumer groups that tools create with random suffixes are covered by prefixes that
    no other role's group starts with, so no principal can join another's group (joining
    the signer's group would take partitions of ``actions`` from it).
    """
    p = _prefix(topics)
    signer_id = f"{topics.entries}.signer"  # transactional id and group (signer_worker.settings)
    rules: list[tuple[str, str, str, str, str]] = []

    def topic(role: str, name: str, *ops: str) -> None:
        rules.extend((role, "TOPIC", "LITERAL", name, op) for op in ("DESCRIBE", *ops))

    def group(role: str, name: str, pattern: str = "PREFIXED", *ops: str) -> None:
        rules.extend((role, "GROUP", pattern, name, op) for op in (ops or ("READ", "DESCRIBE")))

    # producers: agents emit actions; approvers read requests and answer on the same topic
    topic("producer", topics.actions, "WRITE")
    topic("producer", topics.approvals, "WRITE", "READ")
    group("producer", "ledgerstream-approval-")
    group("producer", "ledgerstream-read-")
    # the signer: the only writer of the ledger, in transactions under its own id
    topic("signer", topics.actions, "READ")
    topic("signer", topics.approvals, "READ")
    for name in (topics.entries, topics.checkpoints, topics.deadletter, topics.signer_state):
        topic("signer", name, "WRITE", "READ")
    topic("signer", topics.alerts, "WRITE")  # snapshot_rejected, found on its own start
    group("signer", signer_id)  # its consumer group and the hot standby's "<id>.leader" lease
    group("signer", "ledgerstream-reader-")
    rules += [("signer", "TRANSACTIONAL_ID", "PREFIXED", signer_id, op) for op in ("WRITE", "DESCRIBE")]
    # verifiers: read the ledger, observe the signer's progress, write alerts only
    for name in (topics.entries, topics.checkpoints):
        topic("verifier", name, "READ")
    topic("verifier", topics.actions)
    topic("verifier", topics.alerts, "WRITE")
    group("verifier", f"{p}verifier-")
    group("verifier", "ledgerstream-reader-")
    group("verifier", signer_id, "LITERAL", "DESCRIBE")
    # the witness client: it reads the index, never a topic, and only adds cosignatures
    topic("witness", topics.checkpoints, "WRITE")
    # read-only tools
    for name in (topics.entries, topics.checkpoints, topics.alerts, topics.deadletter, topics.approvals,
                 topics.actions):
        topic("reader", name, "READ", "DESCRIBE_CONFIGS")
    for name in ("ledgerstream-reader-", "ledgerstream-read-", "ledgerstream-dashboard-",
                 "ledgerstream-replay-", f"{p}siem-"):
        group("reader", name)
    return rules


def acl_table(topics: Topics) -> str:
    """:func:`acl_rules` as the Markdown table of docs/security.md (a test keeps them equal)."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for role, rtype, pattern, name, op in acl_rules(topics):
        key = (role, rtype.lower().replace("_", " "), name + ("*" if pattern == "PREFIXED" else ""))
        grouped.setdefault(key, []).append(op.replace("_", " ").title())
    rows = [f"| `User:{role}` | {rtype} `{name}` | {', '.join(ops)} |" for (role, rtype, name), ops in grouped.items()]
    return "\n".join(["| principal | resource (`*`: prefix) | operations |", "|---|---|---|", *rows]) + "\n"


def ensure_acls(admin_config: dict[str, str], topics: Topics, timeout: float = 30.0) -> int:
    """Create every ACL of :func:`acl_rules` (creating an existing ACL is a no-op); returns the count."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                       ResourcePatternType, ResourceType)

    bindings = [AclBinding(ResourceType[rtype], name, ResourcePatternType[pattern], f"User:{role}", "*",
                           AclOperation[op], AclPermissionType.ALLOW)
                for role, rtype, pattern, name, op in acl_rules(topics)]
    admin = AdminClient(admin_config)
    for binding, future in admin.create_acls(bindings, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except Exception as exc:
            raise ConfigError(f"cannot create the ACL {binding}: {exc}") from exc
    return len(bindings)


def describe(security: BrokerSecurity | None, client_configs: dict[str, str]) -> dict[str, object]:
    """``kafka.security`` of ``dev status --json``."""
    if security is None:
        return {"protocol": "PLAINTEXT", "mechanism": None, "client_configs": {}}
    return {"protocol": security.protocol, "mechanism": MECHANISM, "client_configs": dict(client_configs)}
