"""The ledger index: a derived read model of ``entries`` and ``checkpoints`` (issue 17, item 2).

``ledgerstream index run`` (``follower.py``) follows both topics, feeds every record to the
core :class:`~ledgerstream.core.verify.Checker` exactly as a verifier does, and keeps

* an embedded SQLite database (``db.py``): entries, links, checkpoints, anchors, foreign
  records, findings, and the Checker's resumable state, committed together;
* C2SP tlog-tiles (``core/tiles.py``) of the verified tree, at the size of the newest
  verified signed checkpoint, whose signed note is the tiles' ``checkpoint`` file.

``core.py`` holds the pure part (records in, rows and tiles out, no Kafka), ``query.py``
the typed read functions the other tools use. docs/index.md describes the whole.
"""
from __future__ import annotations

from ledgerstream.index.paths import IndexPaths

__all__ = ["IndexPaths"]
