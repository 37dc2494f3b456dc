"""The witness's memory: per origin, the newest (size, root) it cosigned. Written to disk
(fsync, atomic rename, fsync of the folder) before any cosignature leaves the process, so a
crash at any point never lets it cosign a checkpoint inconsistent with one it already did."""
from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

from ledgerstream.core.errors import ConfigError

STATE_FILE = "witness-state.json"


class WitnessState:
    """(size, root) by origin; ``compare_and_set`` is the only way to move one forward."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / STATE_FILE
        self.lock = threading.Lock()
        try:
            raw = json.loads(self.path.read_text())
            self._heads = {o: (int(v["size"]), base64.b64decode(v["root"])) for o, v in raw["logs"].items()}
        except FileNotFoundError:
            self._heads = {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"witness state {self.path} is unreadable ({exc}); refusing to start, "
                              "since starting empty could cosign a split view") from exc

    def head(self, origin: str) -> tuple[int, bytes] | None:
        return self._heads.get(origin)

    def set(self, origin: str, size: int, root: bytes) -> None:
        """Persist (size, root) for ``origin``; the caller holds :attr:`lock` and checked it."""
        heads = dict(self._heads)
        heads[origin] = (size, root)
        data = json.dumps({"logs": {o: {"size": s, "root": base64.b64encode(r).decode()}
                                    for o, (s, r) in sorted(heads.items())}}, indent=1).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._heads = heads
