"""The dev stack: a supervisor process that owns Kafka, the dev TSA, the signer, the
verifiers and the dashboard under one home folder, restarts what dies, and records
live state in ``$LEDGERSTREAM_HOME/stack.json`` (what ``dev status`` prints).

``dev up`` spawns the supervisor detached and waits for ``ready``; ``dev down`` sends it
SIGTERM and it stops everything in reverse order. Data stays, so the next ``dev up``
resumes the same ledger (same Kafka data and ports, same keys, same TSA CA).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledgerstream.core import procinfo
from ledgerstream.core.config import DEFAULT_ORIGIN, STACK_FILE, Topics, read_stack
from ledgerstream.core.errors import ConfigError
from ledgerstream.stack.kafka import KafkaBroker, free_port, pid_alive, port_is_free, private_dir, stop_pid
from ledgerstream.stack import security

VERIFIER_IDS = ("v1", "v2")
SIGNER_KEY = "keys/signer.pem"
#: home subfolders holding keys, payloads, verifier state or the dashboard token: 0700
PRIVATE_DIRS = ("keys", "spool", "kafka", "kafka-clients", "tsa", "verifiers", "dashboard", "index", "tiles")
DASHBOARD_TOKEN = "dashboard/token"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _sticky_port(path: Path) -> int:
    """A port remembered in ``path`` (reused while free) so URLs survive restarts."""
    if path.exists():
        port = int(path.read_text())
        if port_is_free(port):
            return port
    port = free_port()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(port))
    return port


@dataclass
class Service:
    """A supervised child process; restarted with backoff when it dies."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self, env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout, proc=self.proc)
        self.proc = None


class Supervisor:
    """Runs in its own process (``python -m ledgerstream.stack.devstack --home H``)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.topics = Topics.with_prefix()
        self.kafka = KafkaBroker(home / "kafka")
        self.services: list[Service] = []
        self.stopping = False
        self.state: dict[str, Any] = {}
        self.client_configs: dict[str, str] = {}

    # --- state file ------------------------------------------------------------------------
    def _write_state(self, ready: bool) -> None:
        by_name = {s.name: s for s in self.services}
        tsa = by_name.get("tsa")
        self.state = {
            "home": str(self.home),
            "ready": ready,
            "supervisor": {"pid": os.getpid()},
            "kafka": {"bootstrap": self.kafka.bootstrap, "pid": self.kafka.pid,
                      "security": security.describe(self.kafka.security, self.client_configs)},
            "tsa": {"url": tsa.extra.get("url") if tsa else None,
                    "ca_cert": str(self.home / "tsa" / "ca.pem"),
                    "pid": tsa.pid if tsa else None, "dev_only": True},
            "signer": {"pid": by_name["signer"].pid if "signer" in by_name else None,
                       "restarts": by_name["signer"].restarts if "signer" in by_name else 0,
                       "key": str(self.home / SIGNER_KEY)},
            "verifiers": [{"id": s.extra["id"], "pid": s.pid, "restarts": s.restarts}
                          for s in self.services if s.name.startswith("verifier:")],
            "dashboard": {"url": by_name["dashboard"].extra.get("url") if "dashboard" in by_name else None,
                          "pid": by_name["dashboard"].pid if "dashboard" in by_name else None,
                          "token_file": str(self.home / DASHBOARD_TOKEN) if "dashboard" in by_name else None},
            "index": {"pid": by_name["index"].pid if "index" in by_name else None,
                      "restarts": by_name["index"].restarts if "index" in by_name else 0,
                      "tiles_dir": str(self.home / "tiles") if "index" in by_name else None},
            "witnesses": [{"name": s.extra["name"], "url": s.extra["url"], "vkey": s.extra["vkey"], "pid": s.pid}
                          for s in self.services if s.name.startswith("witness:")],
            "witness_client": {"pid": by_name["witness-client"].pid if "witness-client" in by_name else None,
                               "restarts": by_name["witness-client"].restarts if "witness-client" in by_name else 0},
            "topics": self.topics.as_dict(),
        }
        write_json_atomic(self.home / STACK_FILE, self.state)

    # --- services --------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LEDGERSTREAM_HOME"] = str(self.home)
        env["LEDGERSTREAM_BOOTSTRAP"] = self.kafka.bootstrap
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _build_services(self) -> None:
        py = sys.executable
        logs = self.home / "logs"
        tsa_port = _sticky_port(self.home / "tsa" / "port")
        tsa = Service("tsa", [py, "-m", "ledgerstream.stack.devtsa", "--dir", str(self.home / "tsa"),
                              "--port", str(tsa_port), "--ready-file", str(self.home / "tsa" / "ready.json")],
                      logs / "tsa.log", extra={"url": f"http://127.0.0.1:{tsa_port}/"})
        self.services.append(tsa)
        for name, argv, extra in [*optional_services(self.home, py), *witness_services(self.home, py)]:
            self.services.append(Service(name, argv, logs / f"{name.replace(':', '-')}.log", extra=extra))

    def _secure(self) -> None:
        """SASL credentials for every role (generated once) and their client files."""
        self.kafka.security = security.BrokerSecurity.load_or_create(self.home / "kafka" / security.SECRETS_FILE)
        self.client_configs = self.kafka.security.write_client_configs(self.home / "kafka-clients")

    def _ensure_signer_key(self) -> None:
        from ledgerstream.core import mldsa, note

        path = self.home / SIGNER_KEY
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            mldsa.save_private_key(mldsa.PrivateKey.generate(), path)
        path.chmod(0o600)
        key = mldsa.load_private_key(path)
        pub = path.with_name("signer.pub.pem")
        pub.write_bytes(mldsa.public_key_pem(key.public_key()))
        ed_path = note.ed25519_key_path(path)  # the checkpoints' standard (Ed25519) note key
        if not ed_path.exists():
            ed_path.write_bytes(note.ed25519_pem(note.generate_ed25519()))
        ed_path.chmod(0o600)
        ed = note.load_ed25519(ed_path.read_bytes(), str(ed_path))
        vkeys = note.log_verifiers(DEFAULT_ORIGIN, key.public_key(), ed)
        note.vkey_path(path).write_text("".join(v.vkey + "\n" for v in vkeys))

    def _ensure_verifier_keys(self) -> None:
        """Each verifier's (and the index's) own alert signing key (keys/verifier-<id>.pem, 0600) and its public
        half (keys/verifier-<id>.pub.pem, what readers trust by default)."""
        from ledgerstream.core import mldsa
        from ledgerstream.core.alert_signature import verifier_key_path, verifier_public_key_path

        from ledgerstream.index.core import INDEX_ID

        for vid in (*VERIFIER_IDS, INDEX_ID):  # the index publishes its findings as alerts too
            path = verifier_key_path(self.home, vid)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                mldsa.save_private_key(mldsa.PrivateKey.generate(), path)
            path.chmod(0o600)
            key = mldsa.load_private_key(path)
            verifier_public_key_path(self.home, vid).write_bytes(mldsa.public_key_pem(key.public_key()))

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        for name in PRIVATE_DIRS:
            private_dir(self.home / name)
        self._secure()
        self._write_state(False)
        try:
            self.kafka.start()
            from ledgerstream.stack.topics import ensure_topics

            ensure_topics(self.kafka.bootstrap, self.topics)
            security.ensure_acls(self.kafka.admin_config(), self.topics)
            self._ensure_signer_key()
            self._ensure_verifier_keys()
            self._build_services()
            if any(svc.name == "dashboard" for svc in self.services):
                from ledgerstream.tools.dashboard.settings import load_or_create_token

                load_or_create_token(self.home / DASHBOARD_TOKEN)  # before `dev up` returns and prints it
            env = self._env()
            for svc in self.services:
                svc.start(env)
                if svc.name == "tsa":
                    self._wait_file(self.home / "tsa" / "ready.json", svc, 30)
            self._write_state(True)
            self._loop(env)
        finally:
            self.shutdown()

    def _wait_file(self, path: Path, svc: Service, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and svc.proc is not None:
                try:
                    if json.loads(path.read_text()).get("pid") == svc.proc.pid:
                        return
                except ValueError:
                    pass
            if svc.proc is not None and svc.proc.poll() is not None:
                raise ConfigError(f"{svc.name} exited during start; see {svc.log}")
            time.sleep(0.1)
        raise ConfigError(f"{svc.name} not ready within {timeout}s; see {svc.log}")

    def _loop(self, env: dict[str, str]) -> None:
        while not self.stopping:
            changed = False
            if self.kafka.proc is not None and self.kafka.proc.poll() is not None:
                print("kafka died; restarting", flush=True)
                self.kafka.proc = None
                self.kafka.start()
                changed = True
            now = time.monotonic()
            for svc in self.services:
                if svc.proc is not None and svc.proc.poll() is not None:
                    print(f"{svc.name} exited with {svc.proc.returncode}; restarting", flush=True)
                    svc.proc = None
                    svc.restarts += 1
                    svc.next_start = now + min(0.2 * 2 ** min(svc.restarts, 5), 5.0)
                    changed = True
                if svc.proc is None and now >= svc.next_start and not self.stopping:
                    svc.start(env)
                    changed = True
            if changed:
                self._write_state(True)
            time.sleep(0.2)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        self.stopping = True
        for svc in reversed(self.services):
            svc.stop()
        self.kafka.stop()
        self._write_state(False)
        state = read_stack(self.home) or {}
        state["supervisor"] = {"pid": None}
        write_json_atomic(self.home / STACK_FILE, state)


def optional_services(home: Path, py: str) -> list[tuple[str, list[str], dict[str, Any]]]:
    """Signer, verifiers, the index and the dashboard, for the components this install has."""
    import importlib.util

    out: list[tuple[str, list[str], dict[str, Any]]] = []
    if importlib.util.find_spec("ledgerstream.signer_worker.__main__") is not None:
        # One supervised signer: no lease to wait for after a restart (fencing by the
        # transactional id still applies); run a second signer by hand for hot standby.
        out.append(("signer", [py, "-m", "ledgerstream.signer_worker", "--home", str(home),
                               "--no-leader-election"], {}))
    if importlib.util.find_spec("ledgerstream.verifier_worker.__main__") is not None:
        for vid in VERIFIER_IDS:
            out.append((f"verifier:{vid}", [py, "-m", "ledgerstream.verifier_worker", "--home", str(home),
                                            "--id", vid], {"id": vid}))
    # the read model (docs/index.md): SQLite rows and C2SP tiles of the verified ledger
    out.append(("index", [py, "-m", "ledgerstream.index", "--home", str(home)], {}))
    if importlib.util.find_spec("ledgerstream.tools.dashboard") is not None:
        port = _sticky_port(home / "dashboard" / "port")
        out.append(("dashboard", [py, "-m", "ledgerstream.tools.dashboard", "--home", str(home),
                                  "--port", str(port)], {"url": f"http://127.0.0.1:{port}/"}))
    return out


#: the dev stack's witnesses (docs/witnesses.md): ours (ML-DSA-65) and torchwood's litewitness
PQ_WITNESS = "ledgerstream.dev/witness-pq"
LITEWITNESS = "litewitness.dev/witness"


def witness_services(home: Path, py: str) -> list[tuple[str, list[str], dict[str, Any]]]:
    """Our ML-DSA-65 witness, litewitness when Go is present, and the witness client; writes
    HOME/witnesses.json (a quorum of all of them) for the client and every verifier."""
    from ledgerstream.core import mldsa, note
    from ledgerstream.core.verify.trust import WITNESSES_FILE
    from ledgerstream.stack import litewitness

    log_vkeys = [v.vkey for v in note.load_vkeys(note.vkey_path(home / SIGNER_KEY).read_text())]
    out: list[tuple[str, list[str], dict[str, Any]]] = []
    pq_dir, pq_key = home / "witness" / "pq", home / "keys" / "witness-pq.pem"
    if not pq_key.exists():
        pq_key.parent.mkdir(parents=True, exist_ok=True)
        mldsa.save_private_key(mldsa.PrivateKey.generate(), pq_key)
    port = _sticky_port(pq_dir / "port")
    pq_vkey = note.Verifier(PQ_WITNESS, note.MLDSA65_COSIGNATURE, mldsa.load_private_key(pq_key).public_key().raw).vkey
    out.append(("witness:pq", [py, "-m", "ledgerstream.witness", "serve", "--name", PQ_WITNESS, "--key", str(pq_key),
                               "--state-dir", str(pq_dir), "--listen", f"127.0.0.1:{port}",
                               *[a for v in log_vkeys for a in ("--log-vkey", v)]],
                {"name": PQ_WITNESS, "url": f"http://127.0.0.1:{port}", "vkey": pq_vkey}))
    if shutil.which("go") is not None and shutil.which("ssh-agent") is not None:
        lw_dir = home / "witness" / "litewitness"
        port = _sticky_port(lw_dir / "port")
        lw_vkey = litewitness.vkey(LITEWITNESS, litewitness.load_or_create_key(lw_dir))
        ed_vkeys = [v for v in log_vkeys if note.parse_vkey(v).kind == note.ED25519]
        out.append(("witness:litewitness", [py, "-m", "ledgerstream.stack.litewitness", "--dir", str(lw_dir),
                                            "--name", LITEWITNESS, "--listen", f"127.0.0.1:{port}",
                                            *[a for v in ed_vkeys for a in ("--log-vkey", v)]],
                    {"name": LITEWITNESS, "url": f"http://127.0.0.1:{port}", "vkey": lw_vkey}))
    witnesses = [extra for _, _, extra in out]
    write_json_atomic(home / WITNESSES_FILE, {"quorum": len(witnesses),
                                              "witnesses": [{"vkey": w["vkey"], "url": w["url"]} for w in witnesses]})
    out.append(("witness-client", [py, "-m", "ledgerstream.witness", "client", "--home", str(home)], {}))
    return out


# --- client side (used by the CLI) -------------------------------------------------------------

def supervisor_pid(home: Path) -> int | None:
    state = read_stack(home) or {}
    pid = (state.get("supervisor") or {}).get("pid")
    return pid if pid_alive(pid) else None


def up(home: Path, *, fresh: bool = False, timeout: float = 180.0) -> dict[str, Any]:
    """Start the stack detached (idempotent) and return its state once ready."""
    if fresh:
        down(home)
        if home.exists():
            shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    if supervisor_pid(home) is not None:
        return wait_ready(home, timeout)
    from ledgerstream.stack.kafka import ensure_jars

    ensure_jars()  # fetch jars here so a first run reports Maven problems directly
    log = home / "logs" / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    state = read_stack(home) or {}
    state.update({"ready": False, "supervisor": {"pid": None}})
    write_json_atomic(home / STACK_FILE, state)
    env = dict(os.environ, LEDGERSTREAM_HOME=str(home), PYTHONUNBUFFERED="1")
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ledgerstream.stack.devstack", "--home", str(home)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    return wait_ready(home, timeout, proc=proc)


def wait_ready(home: Path, timeout: float, proc: subprocess.Popen | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_stack(home) or {}
        if state.get("ready") and pid_alive((state.get("supervisor") or {}).get("pid")):
            return state
        if proc is not None and proc.poll() is not None:
            tail = "\n".join((home / "logs" / "supervisor.log").read_text(errors="replace").splitlines()[-25:])
            raise ConfigError(f"the dev stack failed to start (exit {proc.returncode}):\n{tail}")
        time.sleep(0.2)
    raise ConfigError(f"the dev stack was not ready within {timeout:.0f}s; see {home / 'logs'}")


def down(home: Path, timeout: float = 60.0) -> list[int]:
    """Stop the supervisor and every process of the stack; returns pids that had to be killed."""
    state = read_stack(home) or {}
    pid = (state.get("supervisor") or {}).get("pid")
    if pid_alive(pid):
        stop_pid(pid, timeout)
    leftovers = [p for p in recorded_pids(read_stack(home) or state) if pid_alive(p)]
    for p in leftovers:
        stop_pid(p, 10)
    return leftovers


def recorded_pids(state: dict[str, Any]) -> list[int]:
    pids = [(state.get(k) or {}).get("pid") for k in ("supervisor", "kafka", "tsa", "signer", "index", "dashboard",
                                                      "witness_client")]
    pids += [v.get("pid") for v in [*(state.get("verifiers") or []), *(state.get("witnesses") or [])]]
    return [p for p in pids if p]


def status(home: Path) -> dict[str, Any]:
    """The recorded state with liveness checked (dead pids shown as null)."""
    state = read_stack(home)
    if state is None:
        return {"home": str(home), "running": False,
                "kafka": {"bootstrap": None, "pid": None, "security": security.describe(None, {})},
                "tsa": {"url": None, "ca_cert": None, "pid": None},
                "signer": {"pid": None, "recovery_s": None, "recovered_from": None, "rss_mb": None},
                "verifiers": [], "index": {"pid": None, "restarts": 0, "tiles_dir": None},
                "dashboard": {"url": None, "pid": None, "token_file": None}, "witnesses": [],
                "topics": Topics.with_prefix().as_dict()}
    for key in ("kafka", "tsa", "signer", "index", "dashboard", "witness_client", "supervisor"):
        part = state.get(key) or {}
        if part.get("pid") and not pid_alive(part["pid"]):
            part["pid"] = None
        if key != "supervisor" and key in state:
            part["health"] = DOWN if part.get("pid") is None else HEALTHY
    if "signer" in state:
        state["signer"]["health"] = _signer_health(home, state["signer"])
        state["signer"].update(_signer_resources(home, state["signer"]))
    for w in state.get("witnesses") or []:
        if w.get("pid") and not pid_alive(w["pid"]):
            w["pid"] = None
    for v in state.get("verifiers") or []:
        if v.get("pid") and not pid_alive(v["pid"]):
            v["pid"] = None
        v.update(_verifier_position(home, v["id"]))
        v["health"] = _verifier_health(v, _read_json(home / "verifiers" / v["id"] / "status.json"))
    state["running"] = bool((state.get("supervisor") or {}).get("pid")) and bool(state.get("ready"))
    return state


# --- health: "healthy", "starting", "unhealthy" (alive, but no progress), "down" (no process) ---
HEALTHY, STARTING, UNHEALTHY, DOWN = "healthy", "starting", "unhealthy", "down"
#: a status file not rewritten for this long means a stuck loop (both loops write every few
#: seconds while alive, idle or busy)
STALE_SECONDS = 30.0


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fresh(data: dict[str, Any]) -> bool:
    return time.time() - float(data.get("updated_at") or 0) <= STALE_SECONDS


def _signer_health(home: Path, part: dict[str, Any]) -> str:
    if part.get("pid") is None:
        return DOWN
    st = _read_json(home / "signer" / "status.json")
    if st is None or st.get("pid") != part["pid"] or st.get("role") == "starting":
        return STARTING
    if st.get("role") == "standby":  # waits for the lease; writes its status only on changes
        return HEALTHY
    return HEALTHY if _fresh(st) else UNHEALTHY


def _signer_resources(home: Path, part: dict[str, Any]) -> dict[str, Any]:
    """``recovery_s`` of the running signer's latest start (null until it is ready, or while
    it waits as a standby), what that start recovered from (the snapshot's seq and the tail
    replayed after it) and its resident memory now."""
    pid = part.get("pid")
    st = _read_json(home / "signer" / "status.json") or {}
    current = pid is not None and st.get("pid") == pid
    return {"recovery_s": st.get("recovery_s") if current else None,
            "recovered_from": st.get("recovered_from") if current else None,
            "rss_mb": procinfo.rss_mb(pid) if pid is not None else None}


def _verifier_health(v: dict[str, Any], st: dict[str, Any] | None) -> str:
    if v.get("pid") is None:
        return DOWN
    if st is None or st.get("pid") != v["pid"]:
        return STARTING
    return HEALTHY if st.get("healthy") and _fresh(st) else UNHEALTHY


def _verifier_position(home: Path, vid: str) -> dict[str, Any]:
    data = _read_json(home / "verifiers" / vid / "status.json")
    if data is None:
        return {"position": None}
    return {"position": data.get("position"), "lag": data.get("lag"), "healthy": data.get("healthy")}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="ledgerstream dev stack supervisor (run by 'dev up')")
    parser.add_argument("--home", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        Supervisor(args.home.resolve()).run()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
