"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file is parsed with PyYAML (merge keys resolved) and checked for what a
production-like stack needs; every option a service passes to a ledgerstream program
must be one that program's ``--help`` lists, so the file cannot drift from the CLI.
"""
from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.signer_worker.settings import SignerSettings

yaml = pytest.importorskip("yaml")

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LEDGERSTREAM_SERVICES = {"secrets-init", "topics", "keygen", "signer", "signer-standby", "verifier-v1", "verifier-v2",
                         "index", "dashboard", "dev-tsa"}
#: the Kafka role each service's clients authenticate as (volume creds-<role>)
KAFKA_ROLES = {"topics": "admin", "signer": "signer", "signer-standby": "signer", "verifier-v1": "verifier",
               "verifier-v2": "verifier", "index": "verifier", "dashboard": "reader"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@cache
def help_text(*program: str) -> str:
    out = subprocess.run([sys.executable, *program, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def program_of(argv: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The program an argv runs (as arguments to python) and the rest of its arguments."""
    if argv[:2] == ["python", "-m"]:
        return ("-m", argv[2]), argv[3:]
    if argv[0] == "python":
        return (argv[1].replace("/opt/ledgerstream/docker/", "docker/"),), argv[2:]
    if argv[0] == "ledgerstream":
        words = [w for w in argv[1:] if not w.startswith("-")]
        return ("-m", "ledgerstream.cli.main", *words[:2]), argv[1:]
    raise AssertionError(f"unknown program in {argv}")


def options(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def test_services_and_images(services: dict[str, Any]) -> None:
    assert set(services) == {"kafka"} | LEDGERSTREAM_SERVICES
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", services["kafka"]["image"])
    for name in LEDGERSTREAM_SERVICES:
        assert services[name]["image"].startswith("ledgerstream:") and services[name]["build"]["context"] == "."
    assert services["dev-tsa"]["profiles"] == ["dev-tsa"]
    assert all("profiles" not in s for n, s in services.items() if n != "dev-tsa")


def test_kafka_runs_kraft_single_node_with_sasl_ssl_only(services: dict[str, Any], tmp_path: Path) -> None:
    from ledgerstream.stack.compose_secrets import KAFKA_MOUNT, generate

    generate(tmp_path, ["kafka"], kafka_mount=KAFKA_MOUNT)
    props = dict(line.split("=", 1) for line in (tmp_path / "kafka" / "server.properties").read_text().splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@kafka:9093"
    assert props["auto.create.topics.enable"] == "false"
    assert props["transaction.state.log.replication.factor"] == "1"  # transactions work on one node
    assert props["listeners"] == "SASL_SSL://:9094,CONTROLLER://:9093"
    assert props["advertised.listeners"] == "SASL_SSL://kafka:9094"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["ssl.keystore.location"] == f"{KAFKA_MOUNT}/broker-keystore.pem"
    assert "PLAINTEXT://" not in props["listeners"] + props["advertised.listeners"]
    assert not any("zookeeper" in k for k in props)
    kafka = services["kafka"]
    assert f"kafka-secrets:{KAFKA_MOUNT}:ro" in kafka["volumes"] and "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    script = kafka["entrypoint"][-1]
    assert f"-c {KAFKA_MOUNT}/server.properties --add-scram" in script
    assert script.endswith(f"exec /opt/kafka/bin/kafka-server-start.sh {KAFKA_MOUNT}/server.properties")
    assert services["kafka"]["depends_on"]["secrets-init"]["condition"] == "service_completed_successfully"


def test_each_service_mounts_only_its_own_kafka_credentials(services: dict[str, Any]) -> None:
    for name, service in services.items():
        mounts = [str(v).split(":")[0] for v in service.get("volumes", [])]
        creds = [m for m in mounts if m.startswith("creds-")]
        if name == "secrets-init":
            assert len(creds) == 5
            continue
        role = KAFKA_ROLES.get(name)
        assert creds == ([f"creds-{role}"] if role else []), name
        if role:
            assert service["environment"]["LEDGERSTREAM_KAFKA_CONFIG"] == f"/kafka-client/{role}.properties", name
            assert f"creds-{role}:/kafka-client:ro" in service["volumes"], name
        if name not in ("secrets-init", "kafka", "topics"):
            assert "kafka-secrets" not in mounts, name
        for arg in service.get("command") or []:
            assert "9092" not in str(arg), name  # no plaintext listener anywhere


def test_signer_has_a_hot_standby_on_the_same_transactional_id(services: dict[str, Any]) -> None:
    a, b = services["signer"]["command"], services["signer-standby"]["command"]
    differ = [(x, y) for x, y in zip(a, b) if x != y]
    assert len(a) == len(b) and len(differ) == 1 and differ[0][0].endswith("signer.json")  # only the status file
    assert "--no-leader-election" not in a  # leadership decides who writes
    for name in ("signer", "signer-standby"):
        s = services[name]
        assert s["entrypoint"] == ["/opt/ledgerstream/docker/with-tsa-urls.sh"]
        urls = s["environment"]["LEDGERSTREAM_TSA_URLS"]
        assert "https://freetsa.org/tsr" in urls and "timestamp.digicert.com" in urls
        assert "signer-keys:/keys:ro" in s["volumes"]
        # an unprivileged process may lower its nice value to 20 - RLIMIT_NICE: the signer's default -10
        assert 20 - s["ulimits"]["nice"] <= SignerSettings.signing_nice


def test_private_key_reaches_only_the_signers(services: dict[str, Any]) -> None:
    holders = {n for n, s in services.items() if any(str(v).startswith("signer-keys:") for v in s.get("volumes", []))}
    assert holders == {"keygen", "signer", "signer-standby"}
    for name in ("verifier-v1", "verifier-v2", "dashboard"):
        assert "trust:/trust:ro" in services[name]["volumes"]
    assert "state:/data:ro" in services["dashboard"]["volumes"]  # the dashboard only reads


def test_each_verifier_alert_key_reaches_only_that_verifier(services: dict[str, Any]) -> None:
    """Alerts are signed per verifier (issue 19): a verifier that holds another's key could forge
    its alerts, and a compose verifier without ``--alert-key`` material would exit 2. The index
    publishes its findings too (issue 17), under its own key."""
    keygen = (ROOT / "docker" / "keygen.sh").read_text()
    trusted = services["dashboard"]["command"]
    for vid, name in (("v1", "verifier-v1"), ("v2", "verifier-v2"), ("index", "index")):
        volume = f"verifier-keys-{vid}"
        holders = {n for n, s in services.items() if any(str(v).startswith(volume + ":") for v in s.get("volumes", []))}
        assert holders == {"keygen", name}
        command = services[name]["command"]
        key_path = command[command.index("--alert-key") + 1]
        mount = next(str(v).split(":")[1] for v in services[name]["volumes"] if str(v).startswith(volume + ":"))
        assert key_path.startswith(mount + "/") and str(services[name]["volumes"]).count(volume) == 1
        generated = next(str(v).split(":")[1] for v in services["keygen"]["volumes"] if str(v).startswith(volume + ":"))
        assert f"{generated.rsplit('/', 1)[0]}/$id/verifier-$id.pem" in keygen  # keygen writes the file it mounts
        assert key_path.rsplit("/", 1)[1] == f"verifier-{vid}.pem"
        assert f"{vid}=/trust/verifier-{vid}.pub.pem" in trusted
    assert 'cp "/verifier-keys/$id/verifier-$id.pem.pub" "/trust/verifier-$id.pub.pem"' in keygen


def test_two_independent_verifiers(services: dict[str, Any]) -> None:
    ids = [services[n]["command"][services[n]["command"].index("--id") + 1] for n in ("verifier-v1", "verifier-v2")]
    assert ids == ["v1", "v2"]
    ports = {services[n]["command"][services[n]["command"].index("--metrics-port") + 1] for n in ("verifier-v1", "verifier-v2")}
    assert len(ports) == 2


def test_dashboard_is_token_protected_and_local(services: dict[str, Any]) -> None:
    d = services["dashboard"]
    assert d["environment"]["LEDGERSTREAM_DASHBOARD_TOKEN"].startswith("${LEDGERSTREAM_DASHBOARD_TOKEN:?")
    assert all(str(p).startswith("127.0.0.1:") for p in d["ports"])


def test_healthchecks_and_dependency_conditions(services: dict[str, Any]) -> None:
    for name in ("kafka", "signer", "signer-standby", "verifier-v1", "verifier-v2", "dashboard", "dev-tsa"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    allowed = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services and spec["condition"] in allowed, (name, dep)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep
            if spec["condition"] == "service_completed_successfully":
                assert services[dep]["restart"] == "no", dep
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_volumes_and_configs_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            assert source in named, volume
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"]
    assert (ROOT / "docker" / "tsa-ca.pem").exists()


def test_every_option_exists_in_the_programs_help(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name == "kafka":
            continue
        command = service["command"]
        if command[:2] == ["sh", "/opt/ledgerstream/docker/keygen.sh"]:
            continue  # checked below, line by line
        program, args = program_of(command)
        text = help_text(*program)
        for option in options(args):
            assert re.search(rf"(^|\s|\[){re.escape(option)}\b", text), f"{name}: {option} is not in {program} --help"
    # the entrypoint adds --tsa-url, which the signer must accept
    assert "--tsa-url" in help_text("-m", "ledgerstream.signer_worker")
    for line in (ROOT / "docker" / "keygen.sh").read_text().splitlines():
        words = line.strip().split()
        if words[:1] == ["ledgerstream"]:
            program, args = program_of(words)
            for option in options(args):
                assert option in help_text(*program), f"keygen.sh: {option}"


def test_scripts_the_compose_file_runs_exist(services: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for path in set(re.findall(r"/opt/ledgerstream/docker/([\w.-]+)", text)):
        assert (ROOT / "docker" / path).is_file(), path


def test_dockerfile_builds_liboqs_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.M)
    assert len(stages) >= 3 and stages[-1] == "runtime"
    # the same patched, vector-checked build as a checkout (docs/decisions.md D24)
    liboqs = text[text.index(" AS liboqs"):text.index(" AS wheels")]
    assert "OQS_INSTALL_PATH=/opt/oqs PYTHON=python bash scripts/install_liboqs.sh" in liboqs
    assert "--shim-only" not in liboqs  # the script builds liboqs itself, not only the shim
    copied = [p for line in re.findall(r"^COPY (.+) \S+$", liboqs, re.M) for p in line.split()]
    assert "scripts/liboqs-*.patch" in copied and "tests/vectors/wycheproof/mldsa_65_verify_test.json" in copied
    for pattern in copied:
        assert list(ROOT.glob(pattern)), pattern
    assert "OQS_INSTALL_PATH=/opt/oqs" in text  # where ledgerstream.core.mldsa looks for liboqs
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))


def test_dockerfile_builds_the_compiled_entry_reader() -> None:
    """setup.py's extension is optional: without a compiler in the wheel stage the image
    would silently verify through fastavro, so the stage installs one and the build checks it."""
    text = (ROOT / "Dockerfile").read_text()
    wheels = text[text.index(" AS wheels"):text.index(" AS runtime")]
    assert "build-essential" in wheels and "COPY pyproject.toml setup.py" in wheels
    assert "assert avro_fast.compiled()" in text[text.index(" AS runtime"):]


def test_tsa_url_entrypoint_turns_the_list_into_options() -> None:
    out = subprocess.run(["sh", str(ROOT / "docker" / "with-tsa-urls.sh"), "echo", "signer"], capture_output=True,
                         text=True, env={"LEDGERSTREAM_TSA_URLS": "https://a.example/tsr  http://b.example"}, timeout=30)
    assert out.stdout.split() == ["signer", "--tsa-url", "https://a.example/tsr", "--tsa-url", "http://b.example"]
