"""``ledgerstream bench index``: what the ledger index costs and what it buys, at two sizes.

One run, one machine, private topics on a private embedded broker (or the given one):

1. a ledger of ``entries`` entries is written by the signer's own sequencer (checkpoint
   signing mode by default: entries carry no ML-DSA signature, each 1,000-entry transaction
   ends with a signed checkpoint, so building millions of entries is affordable) in two
   parts, up to ``small`` (a fifth) and then to ``entries``; event ids are UUIDv7 as
   ledgerstream's producers make them, or random UUIDv4 (``event_ids="uuid4"``: the index's
   unique event-id column then takes random inserts, its worst case);
2. after each part a real follower (``python -m ledgerstream.index run --once``) indexes it:
   its wall time, follow rate (entries/s from its own status file) and peak and median RSS
   (sampled from /proc every 50 ms) are recorded;
3. at each size, in this process: ``show`` (one index row + one Kafka fetch by offset +
   decode) and ``prove inclusion`` (row + tiles) latency p50/p99 over random entries, replay
   of one agent's k entries for several k, and index + tile bytes per entry;
4. the obvious baseline at the small size: ``show`` by a full read of the topics through
   the core (what every read cost before the index).
"""
from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core import mldsa, procinfo
from ledgerstream.core.kafka_security import role_env
from ledgerstream.tools.bench_kafka import private_kafka
from ledgerstream.tools.bench_ledger import LedgerWriter

#: agents with a known number of entries, for replay time against k
RARE = {"rare-10": 10, "rare-100": 100, "rare-1000": 1000}
SAMPLES = 200


def _follow(home: Path, bootstrap: str, prefix: str) -> dict[str, Any]:
    """A real follower indexing to the topics' end: wall, rate, peak RSS."""
    from ledgerstream.index.paths import IndexPaths

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ledgerstream.index", "--once", "--home", str(home),
                             "--bootstrap", bootstrap, "--topic-prefix", prefix],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, **role_env(bootstrap, "admin")))
    samples: list[float] = []
    while proc.poll() is None:
        rss = procinfo.rss_mb(proc.pid)
        if rss:
            samples.append(rss)
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the index follower exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
    import json

    status = json.loads(IndexPaths.of(home).status.read_text())
    return {"wall_s": round(wall, 1), "entries_per_s": status.get("entries_per_second"),
            "peak_rss_mb": max(samples, default=0.0),
            # the level it works at: the peak is one sample, often a transient (a fetch buffer)
            "median_rss_mb": round(statistics.median(samples), 1) if samples else 0.0}


def _pcts(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2), "n": len(ordered)}


def _reads(home: Path, bootstrap: str, topics: Any, size: int) -> dict[str, Any]:
    """show / prove inclusion latency in-process, replay against k, bytes per entry."""
    from ledgerstream.index import query
    from ledgerstream.index.paths import IndexPaths
    from ledgerstream.index.reads import open_for
    from ledgerstream.tools.replay import Selection
    from ledgerstream.tools.replay_index import indexed_ledger

    ix = open_for(home, bootstrap, topics)
    assert ix is not None
    rng = random.Random(size)
    try:
        if query.indexed_size(ix.conn) < size - 1:
            raise RuntimeError(f"the index holds {query.indexed_size(ix.conn)} entries, not {size}")
        seqs = [rng.randrange(query.tiles_size(ix.conn)) for _ in range(SAMPLES)]
        ix.entry(seqs[0], 0)  # warm the Kafka connection once
        show, prove = [], []
        for seq in seqs:
            t = time.perf_counter()
            ix.entry(seq, 0)
            show.append(time.perf_counter() - t)
            t = time.perf_counter()
            ix.inclusion(seq, None, 0)
            prove.append(time.perf_counter() - t)
        replay = {}
        for agent, k in RARE.items():
            t = time.perf_counter()
            _, rows = indexed_ledger(ix, Selection(agents=(agent,)), wait=0)
            replay[agent] = {"k": len(rows), "seconds": round(time.perf_counter() - t, 3)}
    finally:
        ix.close()
    paths = IndexPaths.of(home)
    db_bytes = sum(p.stat().st_size for p in paths.db.parent.glob(paths.db.name + "*"))
    db_bytes += sum(p.stat().st_size for p in paths.history_dir.glob("*") if p.is_file())  # the Checker's files
    tile_bytes = sum(p.stat().st_size for p in paths.tiles_dir.rglob("*") if p.is_file())
    return {"show": _pcts(show), "prove_inclusion": _pcts(prove), "replay_agent": replay,
            "index_bytes_per_entry": round(db_bytes / size, 1), "tile_bytes_per_entry": round(tile_bytes / size, 1)}


def _full_read_show(bootstrap: str, topics: Any, key: mldsa.PrivateKey) -> float:
    from ledgerstream.core.verify import CheckerConfig
    from ledgerstream.tools.ledger_snapshot import load_ledger

    start = time.perf_counter()
    load_ledger(bootstrap, topics, CheckerConfig.from_keys([key.public_key()])).entry(0)
    return round(time.perf_counter() - start, 2)


def run(entries: int = 100_000, bootstrap: str | None = None, signing_mode: str = "checkpoint",
        log: Callable[[str], None] = lambda msg: None, event_ids: str = "uuid7") -> dict[str, Any]:
    if entries < 5 * max(RARE.values()):
        raise ValueError(f"need at least {5 * max(RARE.values())} entries")
    small = entries // 5
    key = mldsa.PrivateKey.generate()
    results: dict[str, Any] = {}
    with private_kafka(bootstrap, "benchi", log) as kafka:
        bootstrap, topics = kafka.bootstrap, kafka.topics
        home = kafka.scratch / "home"
        (home / "keys").mkdir(parents=True)
        (home / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(key.public_key()))
        os.environ.update(role_env(bootstrap, "admin"))  # this process's reads, as the bench's own admin
        writer = LedgerWriter(key, entries, bootstrap, topics, signing_mode, rare=RARE, event_ids=event_ids)
        for size in (small, entries):
            log(f"writing the ledger up to {size:,} entries ({signing_mode} signing) ...")
            write_rate = writer.write_to(size, log)
            log(f"indexing up to {size:,} entries with a real follower ...")
            follow = _follow(home, bootstrap, topics.entries[: -len("entries")])
            log(f"reads at {size:,} entries ...")
            point = {"entries": size, "write_entries_per_s": round(write_rate), "follow": follow,
                     **_reads(home, bootstrap, topics, size)}
            if size == small:
                log("baseline: show by a full read of the topics through the core ...")
                point["baseline_full_read_show_s"] = _full_read_show(bootstrap, topics, key)
            results[str(size)] = point
        embedded = kafka.embedded
    a, b = results[str(small)], results[str(entries)]
    return {
        "benchmark": "index", "entries": entries, "signing_mode": signing_mode, "event_ids": event_ids,
        "bootstrap": "embedded" if embedded else bootstrap,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "points": results,
        "flat": {"show_p99_ratio": round(b["show"]["p99_ms"] / max(a["show"]["p99_ms"], 1e-9), 2),
                 "prove_p99_ratio": round(b["prove_inclusion"]["p99_ms"] / max(a["prove_inclusion"]["p99_ms"], 1e-9), 2),
                 "follower_peak_rss_ratio": round(b["follow"]["peak_rss_mb"] / max(a["follow"]["peak_rss_mb"], 1e-9), 2),
                 "follower_median_rss_ratio": round(b["follow"]["median_rss_mb"]
                                                    / max(a["follow"]["median_rss_mb"], 1e-9), 2)},
    }
