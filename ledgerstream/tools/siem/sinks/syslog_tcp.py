"""RFC 5424 messages over TCP with RFC 6587 octet-counting framing (``syslog+tcp://HOST:PORT``).

Syslog over TCP has no application-level acknowledgement, so a write counts as delivered
when (1) every byte was handed to the kernel, (2) the collector's TCP stack acknowledged
every byte (the socket's send queue, ``SIOCOUTQ``, drained) and (3) the connection is
still open afterwards. A collector that crashes while holding acknowledged but unread
bytes can still lose them; use an ``https://`` sink where end-to-end acknowledgement matters.
"""
from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
import time

from ledgerstream.tools.siem.sinks.interface import Sink, SinkError

_SIOCOUTQ = getattr(termios, "TIOCOUTQ", 0x5411)  # Linux: bytes not yet ACKed by the peer


class SyslogTcpSink(Sink):
    wants_syslog_header = True

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError as exc:
                raise SinkError(f"cannot connect to syslog collector {self.describe()}: {exc}") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self._sock = sock
        return self._sock

    def write(self, lines: list[str]) -> None:
        frames = b"".join(_frame(line) for line in lines)
        sock = self._connect()
        try:
            self._check_open(sock)  # a collector that went away since the last write
            sock.sendall(frames)
            self._wait_acked(sock)
            self._check_open(sock)
        except (OSError, SinkError) as exc:
            self.close()
            raise exc if isinstance(exc, SinkError) else SinkError(f"syslog collector {self.describe()}: {exc}") from exc

    def _wait_acked(self, sock: socket.socket) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.0005
        while True:
            try:
                unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0"))[0]
            except OSError:
                return  # no SIOCOUTQ on this platform: sendall is all we can know
            if unacked == 0:
                return
            if time.monotonic() > deadline:
                raise SinkError(f"syslog collector {self.describe()} did not acknowledge {unacked} bytes "
                                f"within {self.timeout:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _check_open(self, sock: socket.socket) -> None:
        """A collector never talks back: readable means it closed (EOF) or reset the connection."""
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except OSError as exc:
            raise SinkError(f"syslog collector {self.describe()} closed the connection: {exc}") from exc
        if data == b"":
            raise SinkError(f"syslog collector {self.describe()} closed the connection")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def describe(self) -> str:
        return f"syslog+tcp://{self.host}:{self.port}"


def _frame(line: str) -> bytes:
    """RFC 6587 section 3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG."""
    data = line.encode("utf-8")
    return str(len(data)).encode("ascii") + b" " + data
