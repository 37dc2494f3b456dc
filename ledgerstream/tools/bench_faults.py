"""``ledgerstream bench faults``: a Jepsen-style fault campaign on a real dev stack.

Several agents record actions at a steady rate through the producer library while the
campaign, in a shuffled order, kill -9s the Kafka broker, the signer and the verifiers and
freezes the broker (SIGSTOP, then SIGCONT). After each fault it waits until every component
is healthy again (``dev status`` health) and records how long that took. Then the agents
close, and the campaign checks what a user relies on:

* every event the agents recorded is in the ledger exactly once (read from ``entries``);
* the chain, every signature and every checkpoint verify (the ``verify`` command's core);
* every component is healthy within 30 s of the last fault;
* the verifiers raised nothing but ``stalled`` (a broker that is down stalls the pipeline).
"""
from __future__ import annotations

import os
import random
import signal
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.stack import devstack
from ledgerstream.stack.kafka import pid_alive

HEALTHY_WITHIN = 30.0     # seconds after the last fault by which everything must be healthy again
RECOVERY_TIMEOUT = 180.0  # a fault whose stack is not healthy by then fails the campaign
ALLOWED_ALERTS = {"stalled"}
Log = Callable[[str], None]


def components(state: dict[str, Any]) -> dict[str, str]:
    """Health of every supervised component of a ``dev status`` document."""
    out = {name: (state.get(name) or {}).get("health", "down") for name in ("kafka", "tsa", "signer", "index", "dashboard")}
    out.update({f"verifier:{v['id']}": v.get("health", "down") for v in state.get("verifiers") or []})
    return out


def wait_healthy(home: Path, timeout: float) -> float | None:
    """Seconds until every component is healthy (polled), or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(h == "healthy" for h in components(devstack.status(home)).values()):
            return time.monotonic() - start
        time.sleep(0.25)
    return None


class Load:
    """``agents`` producer-library ledgers emitting ``rate`` events/s in total, on a thread."""

    def __init__(self, bootstrap: str, topics: Topics, spool: Path, agents: int, rate: float) -> None:
        from ledgerstream.producers.ledger import connect

        self.ledgers = [connect(agent_id=f"faults-{i}", bootstrap=bootstrap, topics=topics, spool_dir=spool)
                        for i in range(agents)]
        self.rate = rate
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        period, n = 1.0 / self.rate, 0
        start = time.monotonic()
        while not self._stop.is_set():
            led = self.ledgers[n % len(self.ledgers)]
            self.ids.append(led.emit("tool:step", {"n": n}))
            n += 1
            delay = start + n * period - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self, timeout: float) -> int:
        """Stop emitting, deliver everything; returns what is still undelivered."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + timeout
        left = 0
        for led in self.ledgers:
            left += led.close(max(1.0, deadline - time.monotonic()))
        return left


def _kill(pid: int | None, sig: int) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _fault(home: Path, kind: str, rng: random.Random, pause_seconds: float) -> None:
    """Inject one fault; a killed process is gone (reaped or a zombie) when this returns."""
    state = devstack.status(home)
    if kind == "broker_pause":
        pid = state["kafka"].get("pid")
        if _kill(pid, signal.SIGSTOP):
            time.sleep(pause_seconds)
            _kill(pid, signal.SIGCONT)
        return
    if kind == "broker_kill":
        victim = state["kafka"].get("pid")
    elif kind == "signer_kill":
        victim = state["signer"].get("pid")
    elif kind == "verifier_kill":
        victim = rng.choice(state["verifiers"]).get("pid")
    else:
        raise ValueError(f"unknown fault {kind!r}")
    _kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(victim) and time.monotonic() < deadline:
        time.sleep(0.01)


def _ledger_event_ids(bootstrap: str, topics: Topics, home: Path) -> Counter[str]:
    """Event ids of the ledger's entries: the records the core adopts under HOME's keys."""
    from ledgerstream.index.reads import trust_of
    from ledgerstream.tools.agents import ledger_entries

    trust = trust_of(home)
    if trust is None:
        raise ConfigError(f"no trusted signer key in {home / 'keys'}")
    entries, _ = ledger_entries(bootstrap, topics, trust)
    return Counter(e["action"]["event_id"] for e in entries)


def _alert_kinds(bootstrap: str, topic: str) -> Counter[str]:
    from ledgerstream.producers.topic_reader import read_all

    kinds: Counter[str] = Counter()
    for msg in read_all(bootstrap, topic, timeout=60):
        kinds[codec.decode(msg.value(), expect="Alert")[1]["kind"]] += 1
    return kinds


def run(home: Path, *, agents: int = 4, rate: float = 200.0, broker_kills: int = 3, signer_kills: int = 20,
        verifier_kills: int = 5, broker_pauses: int = 2, pause_seconds: float = 8.0, gap_seconds: float = 2.0,
        seed: int = 1, log: Log = print) -> dict[str, Any]:
    """Run the campaign on a fresh dev stack in ``home`` (stopped afterwards)."""
    from ledgerstream.core import config
    from ledgerstream.verifier_worker.oneshot import verify_ledger
    from ledgerstream.core.verify import checker_config

    rng = random.Random(seed)
    schedule = (["broker_kill"] * broker_kills + ["signer_kill"] * signer_kills
                + ["verifier_kill"] * verifier_kills + ["broker_pause"] * broker_pauses)
    rng.shuffle(schedule)
    log(f"starting a fresh dev stack in {home}")
    # this process's own Kafka clients (load, checks) find the stack's SASL credentials by home
    os.environ["LEDGERSTREAM_HOME"] = str(home.resolve())
    devstack.up(home, fresh=True)
    started = time.monotonic()
    try:
        if wait_healthy(home, RECOVERY_TIMEOUT) is None:
            raise RuntimeError(f"the dev stack never became healthy: {components(devstack.status(home))}")
        bootstrap = devstack.status(home)["kafka"]["bootstrap"]
        topics = config.resolve_topics(home)
        load = Load(bootstrap, topics, home / "spool", agents, rate)
        load.start()
        recoveries: list[dict[str, Any]] = []
        for i, kind in enumerate(schedule, 1):
            time.sleep(gap_seconds)
            t0 = time.monotonic()
            _fault(home, kind, rng, pause_seconds)
            took = wait_healthy(home, RECOVERY_TIMEOUT)
            recoveries.append({"fault": kind, "healthy_after_s": None if took is None else round(
                time.monotonic() - t0, 2)})
            log(f"fault {i}/{len(schedule)} {kind}: healthy again after "
                f"{'never' if took is None else f'{time.monotonic() - t0:.1f}s'}")
            if took is None:
                break
        healthy_after = wait_healthy(home, HEALTHY_WITHIN)
        time.sleep(gap_seconds)
        undelivered = load.stop(timeout=120)
        emitted = Counter(load.ids)
        log(f"{len(load.ids)} events recorded; waiting for the signer to sequence them")
        in_ledger: Counter[str] = Counter()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            in_ledger = _ledger_event_ids(bootstrap, topics, home)
            if all(in_ledger[e] for e in emitted):
                break
            time.sleep(2)
        missing = sum(1 for e in emitted if not in_ledger[e])
        duplicates = sum(n - 1 for n in in_ledger.values() if n > 1)
        time.sleep(7)  # a checkpoint over the newest entries (the signer checkpoints every 5 s)
        report = verify_ledger(bootstrap, topics, checker_config(home))
        alerts = _alert_kinds(bootstrap, topics.alerts)
    finally:
        devstack.down(home)
    worst = max((RECOVERY_TIMEOUT if r["healthy_after_s"] is None else r["healthy_after_s"] for r in recoveries),
                default=0.0)
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(schedule)):
        times = [r["healthy_after_s"] for r in recoveries if r["fault"] == kind and r["healthy_after_s"] is not None]
        per_kind[kind] = {"count": sum(1 for r in recoveries if r["fault"] == kind),
                          "recovery_p50_s": round(statistics.median(times), 2) if times else None,
                          "recovery_max_s": max(times) if times else None}
    unexpected = {k: n for k, n in alerts.items() if k not in ALLOWED_ALERTS}
    checks = {
        "every_fault_recovered": all(r["healthy_after_s"] is not None for r in recoveries)
        and len(recoveries) == len(schedule),
        "healthy_within_30s_of_last_fault": healthy_after is not None,
        "all_delivered": undelivered == 0,
        "exactly_once": missing == 0 and duplicates == 0,
        "ledger_verifies": report.ok,
        "only_stalled_alerts": not unexpected,
    }
    return {
        "benchmark": "faults", "seed": seed, "agents": agents, "rate_per_s": rate,
        "duration_s": round(time.monotonic() - started, 1), "faults": per_kind,
        "events": {"recorded": len(emitted), "in_ledger": sum(1 for e in emitted if in_ledger[e]),
                   "missing": missing, "duplicates": duplicates, "undelivered_at_close": undelivered,
                   "ledger_entries": report.checker.position},
        "verify": {"ok": report.ok, "errors": [f.kind.value for f in report.errors],
                   "checkpoints": report.checker.stats.checkpoints_verified},
        "alerts": dict(sorted(alerts.items())), "unexpected_alerts": unexpected,
        "worst_recovery_s": worst,
        "healthy_after_last_fault_s": None if healthy_after is None else round(healthy_after, 2),
        "recoveries": recoveries, "checks": checks, "ok": all(checks.values()),
    }
