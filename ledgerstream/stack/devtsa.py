"""DEV-ONLY RFC 3161 time-stamping authority for the local dev stack.

DEV-ONLY: the CA and TSA keys are generated on this machine, stored unencrypted and
trusted by nobody. Tokens from this TSA prove nothing to a third party; they exist so the
dev stack exercises the same request / verify path as a real TSA. Every certificate
subject, log line and HTTP response says so.

Signing is delegated to ``openssl ts -reply`` (a well-tested TSA implementation); this
module only creates the keys and configuration and puts a small HTTP front on it.

Run in the foreground (the dev stack does this as a subprocess)::

    python -m ledgerstream.stack.devtsa --dir DIR [--host 127.0.0.1] [--port 0] [--ready-file PATH]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledgerstream.core.errors import ConfigError

log = logging.getLogger(__name__)

DEV_ONLY_HEADER = "X-Ledgerstream-Dev-Only"
CA_COMMON_NAME = "ledgerstream DEV-ONLY Root CA"
TSA_COMMON_NAME = "ledgerstream DEV-ONLY TSA"
#: Self-assigned UUID OID (ITU-T X.667 arc 2.25): no registration needed, collides with nobody.
DEV_POLICY_OID = "2.25.271889763485278289167752969912406243363"
QUERY_CONTENT_TYPE = "application/timestamp-query"
REPLY_CONTENT_TYPE = "application/timestamp-reply"
MAX_QUERY_BYTES = 64 * 1024  # a SHA-512 query is ~100 bytes; anything large is abuse
OPENSSL_TIMEOUT_S = 30.0

_RSA_BITS = 3072
_CA_VALIDITY = dt.timedelta(days=3650)
_TSA_VALIDITY = dt.timedelta(days=1825)
# Backdating covers small clock differences between the machine that made the CA and this one.
_BACKDATE = dt.timedelta(hours=1)

# Paths are relative: openssl runs with cwd=tsa_dir, so the directory can be moved.
_TSA_CNF = f"""\
# DEV-ONLY time-stamping authority configuration (ledgerstream dev stack).
# Paths are relative to this directory: run `openssl ts -reply` from here.
[ tsa ]
default_tsa = dev_only_tsa

[ dev_only_tsa ]
serial = ./serial
crypto_device = builtin
signer_cert = ./tsa.pem
signer_key = ./tsa.key
signer_digest = sha256
default_policy = {DEV_POLICY_OID}
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 3
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class TsaFiles:
    """Where the DEV-ONLY CA, TSA certificate and openssl configuration live."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    tsa_cert: Path
    tsa_key: Path
    config: Path
    serial: Path

    @classmethod
    def in_dir(cls, tsa_dir: Path) -> TsaFiles:
        d = Path(tsa_dir).resolve()
        return cls(d, d / "ca.pem", d / "ca.key", d / "tsa.pem", d / "tsa.key", d / "tsa.cnf", d / "serial")


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock: serialises threads *and* processes sharing one TSA dir."""
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via rename so a crash never leaves a half-written key or certificate."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ledgerstream dev stack (DEV-ONLY, NOT TRUSTED)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    now = dt.datetime.now(dt.timezone.utc)
    name = _name(CA_COMMON_NAME)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_tsa_cert(ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    now = dt.datetime.now(dt.timezone.utc)
    not_after = min(now + _TSA_VALIDITY, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(TSA_COMMON_NAME))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        # RFC 3161 section 2.3: exactly timeStamping, and the extension MUST be critical.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def ensure_ca(tsa_dir: Path) -> TsaFiles:
    """Create the DEV-ONLY CA, TSA certificate and ``tsa.cnf`` in ``tsa_dir`` unless present.

    Idempotent: existing files are reused, so a restarted dev stack keeps its CA and old
    tokens stay verifiable. A missing TSA certificate is re-issued from the existing CA.
    """
    files = TsaFiles.in_dir(tsa_dir)
    files.dir.mkdir(parents=True, exist_ok=True)
    with _flock(files.dir / ".ensure.lock"):
        if files.ca_cert.exists() != files.ca_key.exists():
            raise ConfigError(f"DEV-ONLY TSA dir {files.dir} has only one of ca.pem / ca.key; "
                              "delete the directory to start a fresh dev CA")
        if files.ca_cert.exists():
            ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
            ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
            if not isinstance(ca_key, rsa.RSAPrivateKey):
                raise ConfigError(f"DEV-ONLY CA key {files.ca_key} is not an RSA key")
        else:
            log.warning("DEV-ONLY TSA: creating a new dev CA in %s (not trusted by anyone)", files.dir)
            ca_key, ca_cert = _make_ca()
            _write_atomic(files.ca_key, _key_pem(ca_key), 0o600)
            _write_atomic(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
            # A new CA invalidates any TSA certificate left from an older one.
            for stale in (files.tsa_cert, files.tsa_key):
                stale.unlink(missing_ok=True)
        if not (files.tsa_cert.exists() and files.tsa_key.exists()):
            tsa_key, tsa_cert = _make_tsa_cert(ca_key, ca_cert)
            _write_atomic(files.tsa_key, _key_pem(tsa_key), 0o600)
            _write_atomic(files.tsa_cert, tsa_cert.public_bytes(serialization.Encoding.PEM))
        if not files.config.exists():
            _write_atomic(files.config, _TSA_CNF.encode())
        if not files.serial.exists():
            _write_atomic(files.serial, b"01\n")
    return files


def _openssl() -> str:
    exe = shutil.which("openssl")
    if exe is None:
        raise ConfigError("the DEV-ONLY TSA needs the openssl command-line tool on PATH")
    return exe


def _validate_query(body: bytes) -> str | None:
    """Why ``body`` is not a TimeStampReq, or None; checked here so openssl only sees sane input."""
    if not body:
        return "empty body: expected a DER TimeStampReq"
    try:
        req = tsp.TimeStampReq.load(body, strict=True)
        req.native  # forces a full parse; asn1crypto is lazy
    except (ValueError, TypeError) as exc:
        return f"body is not a DER TimeStampReq: {exc}"
    return None


class _TsaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], files: TsaFiles, openssl: str) -> None:
        super().__init__(address, _TsaHandler)
        self.files = files
        self.openssl = openssl
        self.ca_pem = files.ca_cert.read_bytes()

    def sign(self, query: bytes) -> tuple[bytes | None, str]:
        """Run ``openssl ts -reply``; returns (reply DER, "") or (None, openssl's complaint)."""
        with tempfile.TemporaryDirectory(prefix="devtsa-") as tmp:
            qpath, rpath = Path(tmp, "q.tsq"), Path(tmp, "r.tsr")
            qpath.write_bytes(query)
            # openssl reads, increments and rewrites `serial` without locking of its own.
            with _flock(self.files.dir / ".serial.lock"):
                proc = subprocess.run(
                    [self.openssl, "ts", "-reply", "-config", str(self.files.config),
                     "-queryfile", str(qpath), "-out", str(rpath)],
                    cwd=self.files.dir, capture_output=True, timeout=OPENSSL_TIMEOUT_S, check=False)
            if proc.returncode != 0 or not rpath.exists():
                return None, proc.stderr.decode(errors="replace").strip()
            return rpath.read_bytes(), ""


class _TsaHandler(BaseHTTPRequestHandler):
    server: _TsaServer
    server_version = "ledgerstream-devtsa-DEV-ONLY/1"

    def end_headers(self) -> None:
        # Every response, errors from BaseHTTPRequestHandler included, carries the warning.
        self.send_header(DEV_ONLY_HEADER, "true")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.info("DEV-ONLY TSA %s %s", self.address_string(), format % args)

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: HTTPStatus, reason: str) -> None:
        self._send(status, "text/plain; charset=utf-8", f"DEV-ONLY TSA: {reason}\n".encode())

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/ca.pem":
            self._send(HTTPStatus.OK, "application/x-pem-file", self.server.ca_pem)
        elif path == "/health":
            body = {"status": "ok", "dev_only": True,
                    "ca_sha256": hashlib.sha256(self.server.ca_pem).hexdigest()}
            self._send(HTTPStatus.OK, "application/json", json.dumps(body).encode())
        else:
            self._text(HTTPStatus.NOT_FOUND, "GET /ca.pem or /health; POST time-stamp queries")

    def do_POST(self) -> None:
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != QUERY_CONTENT_TYPE:
            self._text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                       f"Content-Type must be {QUERY_CONTENT_TYPE}, got {ctype or 'none'!r}")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._text(HTTPStatus.BAD_REQUEST, "a numeric Content-Length is required")
            return
        if length < 0 or length > MAX_QUERY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as a request
            self._text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"query must be 0..{MAX_QUERY_BYTES} bytes")
            return
        body = self.rfile.read(length)
        problem = _validate_query(body)
        if problem is not None:
            self._text(HTTPStatus.BAD_REQUEST, problem)
            return
        try:
            reply, err = self.server.sign(body)
        except (OSError, subprocess.SubprocessError) as exc:
            log.exception("DEV-ONLY TSA: openssl ts -reply could not run")
            self._text(HTTPStatus.INTERNAL_SERVER_ERROR, f"openssl ts -reply could not run: {exc}")
            return
        if reply is None:
            log.error("DEV-ONLY TSA: openssl ts -reply failed: %s", err)
            self._text(HTTPStatus.INTERNAL_SERVER_ERROR, f"openssl ts -reply failed: {err}")
            return
        self._send(HTTPStatus.OK, REPLY_CONTENT_TYPE, reply)


class DevTSA:
    """The DEV-ONLY TSA served from a background thread (tests, in-process dev tools)."""

    def __init__(self, tsa_dir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._dir = Path(tsa_dir)
        self._host = host
        self._requested_port = port
        self._server: _TsaServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> DevTSA:
        """Create the CA if needed, bind, and serve; returns self once the socket listens."""
        if self._server is not None:
            raise RuntimeError("DevTSA already started")
        files = ensure_ca(self._dir)
        server = self._server = _TsaServer((self._host, self._requested_port), files, _openssl())
        self._thread = threading.Thread(target=server.serve_forever, name="devtsa-DEV-ONLY", daemon=True)
        self._thread.start()
        if self._host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("DEV-ONLY TSA is listening on %s: never expose it beyond a dev machine", self._host)
        log.warning("DEV-ONLY TSA listening on %s (CA %s) - tokens are NOT trustworthy", self.url, files.ca_cert)
        return self

    def _running(self) -> _TsaServer:
        if self._server is None:
            raise RuntimeError("DevTSA is not started")
        return self._server

    @property
    def port(self) -> int:
        return int(self._running().server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/"

    @property
    def files(self) -> TsaFiles:
        return self._running().files

    @property
    def ca_cert(self) -> Path:
        return self.files.ca_cert

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        log.info("DEV-ONLY TSA stopped")

    def __enter__(self) -> DevTSA:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Foreground entry point: serve until SIGTERM/SIGINT, announce readiness via a JSON file."""
    parser = argparse.ArgumentParser(prog="python -m ledgerstream.stack.devtsa",
                                     description="DEV-ONLY RFC 3161 time-stamping authority. Never use in production.")
    parser.add_argument("--dir", required=True, type=Path, help="CA / key / config directory (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=0, type=int, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path,
                        help='written as {"url", "port", "pid", "ca_cert"} JSON once listening; removed on exit')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        tsa = DevTSA(args.dir, host=args.host, port=args.port).start()
    except (ConfigError, OSError) as exc:
        log.error("DEV-ONLY TSA could not start: %s", exc)
        return 2
    try:
        if args.ready_file is not None:
            ready = {"url": tsa.url, "port": tsa.port, "pid": os.getpid(), "ca_cert": str(tsa.ca_cert)}
            args.ready_file.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(args.ready_file, json.dumps(ready).encode())
        stop.wait()
        log.info("DEV-ONLY TSA: signal received, shutting down")
    finally:
        tsa.stop()
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
