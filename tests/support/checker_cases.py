"""What the Checker's unit tests share: the trusted signer key, a config trusting it, feeding
entries one record at a time as a consumer hands them over, and real RFC 3161 tokens made
with `openssl ts -reply` and the dev TSA's configuration (an implementation not ours)."""
from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import ENTRIES, Checker, CheckerConfig
from ledgerstream.stack.devtsa import TsaFiles
from support.ledger_builder import LedgerBuilder, entry_bytes

KEY = PrivateKey.from_seed(bytes(range(32)))


def checker_config(**kw: Any) -> CheckerConfig:
    """A config trusting KEY; link grace by 50 entries, not by time, unless given."""
    kw.setdefault("link_grace_entries", 50)
    kw.setdefault("link_grace_seconds", None)
    return CheckerConfig.from_keys([KEY.public_key()], **kw)


def feed_entries(checker: Checker, entries: list[dict[str, Any]], first_offset: int = 0) -> list[str]:
    """Feed ``entries`` one record at a time from ``first_offset``; the kinds found."""
    found = []
    for i, e in enumerate(entries):
        found += checker.feed(ENTRIES, first_offset + i, entry_bytes(e))
    return [f.kind.value for f in found]


def checked_with_gap(b: LedgerBuilder, config: CheckerConfig | None = None) -> tuple[Checker, list[dict[str, Any]]]:
    """Entries 0..4, a gap of 5..6, entries 7..9 from ``b``, fed to a fresh checker (``config``,
    else :func:`checker_config`) and finished (the gap reported); the checker and the entries."""
    entries = b.many(5)
    b.skip()
    b.skip()
    entries += b.many(3)
    checker = Checker(config or checker_config())
    assert feed_entries(checker, entries) == ["gap"]
    checker.finish()
    return checker, entries


def own_and_other(size: int = 5) -> tuple[LedgerBuilder, list[dict[str, Any]], dict[str, Any], LedgerBuilder]:
    """Two histories under KEY: ``size`` entries and their checkpoint, and another signer's
    ``size`` entries (a split view's other side): (builder, entries, checkpoint, the other builder)."""
    b = LedgerBuilder(KEY)
    entries = b.many(size)
    own = b.checkpoint()
    other = LedgerBuilder(KEY)
    other.many(size, agents=("someone-else",))
    return b, entries, own, other


def stamp(files: TsaFiles, data: bytes, tmp: Path) -> bytes:
    """An RFC 3161 reply over ``data`` (SHA-256), its genTime the current time."""
    (tmp / "data").write_bytes(data)
    for args, cwd in ((["-query", "-data", tmp / "data", "-sha256", "-cert", "-out", tmp / "q.tsq"], None),
                      (["-reply", "-config", files.config, "-queryfile", tmp / "q.tsq", "-out", tmp / "r.tsr"],
                       files.dir)):
        done = subprocess.run(["openssl", "ts", *map(str, args)], cwd=cwd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    return (tmp / "r.tsr").read_bytes()


def gen_time(token: bytes, tmp: Path) -> datetime:
    """A token's genTime as `openssl ts -reply -text` prints it (not our parser), e.g.
    "Time stamp: Dec  6 16:40:01.123 2026 GMT"."""
    (tmp / "t.tsr").write_bytes(token)
    text = subprocess.run(["openssl", "ts", "-reply", "-in", str(tmp / "t.tsr"), "-text"],
                          capture_output=True, text=True, check=True).stdout
    printed = re.search(r"^Time stamp: (.+) GMT$", text, re.M).group(1)
    fmt = "%b %d %H:%M:%S.%f %Y" if "." in printed else "%b %d %H:%M:%S %Y"
    return datetime.strptime(" ".join(printed.split()), fmt).replace(tzinfo=timezone.utc)
