"""Standard output and files: a write is acknowledged once flushed (and fsynced, for files)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

from ledgerstream.tools.siem.sinks.interface import Sink, SinkError


class StdoutSink(Sink):
    def write(self, lines: list[str]) -> None:
        try:
            sys.stdout.buffer.write("".join(line + "\n" for line in lines).encode("utf-8"))
            sys.stdout.buffer.flush()
        except BrokenPipeError as exc:
            raise SinkError("standard output was closed", retriable=False) from exc

    def describe(self) -> str:
        return "standard output"


class FileSink(Sink):
    """Appends to a file; fsync before acknowledging, so a crash cannot lose committed lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    def write(self, lines: list[str]) -> None:
        try:
            if self._file is None:
                self._file = open(self.path, "ab")
            self._file.write("".join(line + "\n" for line in lines).encode("utf-8"))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self.close()
            raise SinkError(f"cannot write {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def describe(self) -> str:
        return str(self.path)
