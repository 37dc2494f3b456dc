"""Shared fixtures: one real Kafka broker (and one dev TSA) per test session.

They are started through the same modules the CLI's dev stack uses, on free loopback
ports, and always torn down. Tests isolate themselves with a unique topic prefix.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from ledgerstream.core.config import Topics


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator["KafkaBroker"]:
    from ledgerstream.stack.kafka import KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture()
def topics(bootstrap: str) -> Topics:
    """Fresh topics for one test (unique prefix), created with the production layout."""
    from ledgerstream.stack.topics import ensure_topics

    t = Topics.with_prefix(f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(bootstrap, t)
    return t


@pytest.fixture(scope="session")
def dev_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator["DevTSA"]:
    from ledgerstream.stack.devtsa import DevTSA

    tsa = DevTSA(tmp_path_factory.mktemp("tsa"))
    tsa.start()
    try:
        yield tsa
    finally:
        tsa.stop()


@pytest.fixture()
def ls_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated $LEDGERSTREAM_HOME for one test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LEDGERSTREAM_HOME", str(home))
    monkeypatch.delenv("LEDGERSTREAM_BOOTSTRAP", raising=False)
    return home


#: the leadership lease's session in tests: each takeover after a kill -9 waits it out
#: (the signer's default is 6 s; the embedded broker allows down to 1 s)
SESSION_TIMEOUT_MS = 3000


class SignerProcess:
    """A real signer subprocess (``python -m ledgerstream.signer_worker``) for one test."""

    def __init__(self, bootstrap: str, topics: Topics, key_path: Path, workdir: Path, *extra: str,
                 tsa_url: str | None = None) -> None:
        import subprocess
        import sys

        self.status_file = workdir / f"signer-{uuid.uuid4().hex[:6]}.json"
        self.log_path = workdir / f"{self.status_file.stem}.log"
        prefix = topics.actions[: -len("actions")]
        argv = [sys.executable, "-m", "ledgerstream.signer_worker", "--bootstrap", bootstrap,
                "--key", str(key_path), "--topic-prefix", prefix, "--status-file", str(self.status_file),
                "--checkpoint-ms", "1000", "--session-timeout-ms", str(SESSION_TIMEOUT_MS), *extra]
        argv += ["--tsa-url", tsa_url] if tsa_url else []
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self) -> dict:
        import json

        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def wait_role(self, role: str, timeout: float = 60.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status().get("role") == role and self.status().get("pid") == self.pid:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"signer exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"signer never became {role}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def signer_key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ledgerstream.core import mldsa

    path = tmp_path_factory.mktemp("keys") / "signer.pem"
    mldsa.save_private_key(mldsa.PrivateKey.generate(), path)
    return path


@pytest.fixture()
def start_signer(bootstrap: str, topics: Topics, signer_key_path: Path, tmp_path: Path):
    """Factory: start_signer(*extra_args, tsa_url=None) -> SignerProcess; all stopped after the test."""
    started: list[SignerProcess] = []

    def _start(*extra: str, tsa_url: str | None = None, key_path: Path | None = None) -> SignerProcess:
        proc = SignerProcess(bootstrap, topics, key_path or signer_key_path, tmp_path, *extra, tsa_url=tsa_url)
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        proc.stop()


def _run_dev_stack(home: Path) -> Iterator[dict]:
    """``ledgerstream dev up --detach`` in ``home``; yields ``dev status --json`` plus the
    ``env`` that points the CLI at it; ``dev down`` afterwards."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, LEDGERSTREAM_HOME=str(home))
    env.pop("LEDGERSTREAM_BOOTSTRAP", None)
    cli = [sys.executable, "-m", "ledgerstream.cli.main"]
    subprocess.run(cli + ["dev", "up", "--detach"], env=env, check=True, capture_output=True, timeout=300)
    try:
        out = subprocess.run(cli + ["dev", "status", "--json"], env=env, check=True, capture_output=True,
                             text=True).stdout
        state = json.loads(out)
        state["env"] = env
        yield state
    finally:
        subprocess.run(cli + ["dev", "down"], env=env, capture_output=True, timeout=120)


def stack_kafka_config(state: dict, role: str = "admin", **settings: object) -> dict:
    """A client configuration for a dev stack's broker as ``role`` (its SASL credentials).
    Tests that write rogue records use the admin principal: an insider, the strongest attacker
    that the broker's ACLs leave (anonymous and producer writes are refused, test_kafka_acls)."""
    from ledgerstream.core.kafka_security import kafka_config

    return kafka_config(state["kafka"]["bootstrap"], role, settings, home_dir=Path(state["home"]))


@contextlib.contextmanager
def stack_home(state: dict) -> Iterator[None]:
    """``$LEDGERSTREAM_HOME`` pointed at a dev stack while a module- or session-scoped fixture
    calls the library in-process (function-scoped tests get it from ``_stack_home``)."""
    previous = os.environ.get("LEDGERSTREAM_HOME")
    os.environ["LEDGERSTREAM_HOME"] = state["home"]
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("LEDGERSTREAM_HOME", None)
        else:
            os.environ["LEDGERSTREAM_HOME"] = previous


@pytest.fixture(autouse=True)
def _stack_home(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process library calls of a test that uses a dev stack find that stack's credentials
    (they look them up under $LEDGERSTREAM_HOME, as the CLI does)."""
    for name in request.fixturenames:
        if name.endswith("_stack") and name != "_stack_home":
            state = request.getfixturevalue(name)
            if isinstance(state, dict) and state.get("home"):
                monkeypatch.setenv("LEDGERSTREAM_HOME", state["home"])


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One full dev stack shared by the e2e tests (``_run_dev_stack``).

    Tests that tamper with the ledger must use :func:`own_stack` or accept that later
    tests see their alerts.
    """
    yield from _run_dev_stack(tmp_path_factory.mktemp("devhome"))


@pytest.fixture()
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A fresh dev stack for a test that tampers with its ledger (others keep a clean one)."""
    yield from _run_dev_stack(tmp_path_factory.mktemp("tamperhome"))
