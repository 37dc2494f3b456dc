"""ML-DSA-65 (FIPS 204, pure, empty context) behind one small key interface.

Two backends compute the same function:

* ``pyca``   - the ``cryptography`` package (always present; also does all key encoding).
* ``liboqs`` - the liboqs C library (>= 0.12, the first release with final FIPS 204),
  about 8x faster at signing and 3x at verifying on AVX2. It is driven through ctypes,
  not the liboqs-python binding: ``import oqs`` tries to git-clone and build liboqs when
  it finds no library (raising SystemExit), and the only binding on PyPI (0.16) fails to
  import against liboqs 0.13 (missing OQS_SIG_supports_ctx_str), the newest liboqs a
  package registry offers here (see scripts/install_liboqs.sh).

The canonical private key is the 32-byte FIPS 204 seed xi. liboqs has no keygen-from-seed
call, so the liboqs backend runs its own ``OQS_SIG_keypair`` with the random-bytes source
briefly replaced by one that hands out xi (keygen draws exactly xi, then expands it); the
resulting public key is checked against pyca's, so both backends always agree.

Each backend is used only after it agrees with the FIPS 204 vectors in GATE_VECTORS
(checked once per process, on first load); one that disagrees is refused with a logged
reason and pyca is used (docs/decisions.md D24: liboqs 0.13's AVX2 verifier, unpatched).

``PrivateKey.sign_many`` signs a list of messages. With liboqs and the small
``libledgerstream_sign_many.so`` shim that scripts/install_liboqs.sh builds next to
liboqs, the whole list is signed in one ctypes call, during which the calling thread
holds no GIL (``PrivateKey.sign_many_releases_gil``); the signer runs it on a dedicated
thread. Each signature is exactly what ``sign`` gives (liboqs's own ``OQS_SIG_sign``).
``PublicKey.verify_many`` is the same for verification (``OQS_SIG_verify``): verifiers
check a chunk of signatures on one thread while another decodes and re-hashes entries.
"""
from __future__ import annotations

import abc
import ctypes
import ctypes.util
import functools
import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as _PycaUnsupported
from cryptography.hazmat.primitives import serialization

from ledgerstream.core.errors import ConfigError, InvalidSignature, UnsupportedAlgorithm

if TYPE_CHECKING:  # imported lazily at run time: older cryptography builds lack ML-DSA
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

ALGORITHM = "ML-DSA-65"
SEED_SIZE = 32
PUBLIC_KEY_SIZE = 1952
SIGNATURE_SIZE = 3309
BACKEND_ENV = "LEDGERSTREAM_MLDSA_BACKEND"
BACKENDS = ("liboqs", "pyca")  # order of preference: fastest first

# FIPS 204 vectors every backend must pass on first load (fixed subsets of the vendored
# Wycheproof verify file, "tests", and of NIST's ACVP sigVer set, "acvp_tests";
# tests/vectors/wycheproof/README.md, tests/vectors/acvp/README.md); a backend that fails
# one is not used.
GATE_VECTORS = Path(__file__).with_name("mldsa_gate_vectors.json")
_log = logging.getLogger(__name__)

_OQS_SECRET_KEY_SIZE = 4032  # FIPS 204 expanded sk, what liboqs signs with
_OQS_MIN_VERSION = (0, 12)

Signer = Callable[[bytes], bytes]
ManySigner = Callable[[Sequence[bytes]], list[bytes]]  # one call, the GIL released throughout
Verifier = Callable[[bytes, bytes], bool]  # (signature, message) -> valid
ManyVerifier = Callable[[Sequence[tuple[bytes, bytes]]], list[bool]]  # one call, the GIL released throughout

SIGN_MANY_LIBRARY = "libledgerstream_sign_many.so"
SIGN_MANY_ENV = "LEDGERSTREAM_MLDSA_SIGN_MANY"  # "0": do not load the shim (diagnostics)
_SIGN_MANY_ABI = 2  # scripts/install_liboqs.sh SHIM_ABI


class _Backend(abc.ABC):
    """What a backend must provide; keys hold the callables, not the backend."""

    name: ClassVar[str]

    @abc.abstractmethod
    def signer(self, seed: bytes) -> tuple[bytes, Signer, ManySigner | None]:
        """The raw public key for ``seed``, a function that signs with it and, if the
        backend has one, a function that signs many messages without holding the GIL."""

    @abc.abstractmethod
    def verifier(self, public_key: bytes, context: bytes = b"") -> Verifier:
        """A function that checks signatures under ``public_key`` (FIPS 204 context string
        ``context``: ledgerstream signs with the empty one; the vectors use others too)."""

    def many_verifier(self, public_key: bytes) -> ManyVerifier | None:
        """A function that checks many signatures without holding the GIL, if the backend has one."""
        return None


class _PycaBackend(_Backend):
    name = "pyca"

    def signer(self, seed: bytes) -> tuple[bytes, Signer, ManySigner | None]:
        key = _pyca_private(seed)
        return key.public_key().public_bytes_raw(), key.sign, None

    def verifier(self, public_key: bytes, context: bytes = b"") -> Verifier:
        key: MLDSA65PublicKey = _pyca_mldsa().MLDSA65PublicKey.from_public_bytes(public_key)

        def verify(signature: bytes, message: bytes) -> bool:
            try:
                key.verify(signature, message, context or None)
            except (_PycaInvalidSignature, ValueError):  # ValueError: a context over 255 bytes
                return False
            return True

        return verify


_RANDOMBYTES = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)


class _LiboqsBackend(_Backend):
    name = "liboqs"

    def __init__(self, lib: ctypes.CDLL, many: ctypes.CDLL | None = None) -> None:
        lib.OQS_SIG_new.restype = ctypes.c_void_p
        lib.OQS_SIG_new.argtypes = [ctypes.c_char_p]
        lib.OQS_SIG_keypair.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.OQS_SIG_sign.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
        ]
        lib.OQS_SIG_verify.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
        ]
        lib.OQS_SIG_verify_with_ctx_str.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
        ]
        lib.OQS_randombytes_custom_algorithm.argtypes = [_RANDOMBYTES]
        lib.OQS_randombytes_switch_algorithm.argtypes = [ctypes.c_char_p]
        self._lib = lib
        self._sig = lib.OQS_SIG_new(ALGORITHM.encode())  # a static descriptor, never freed
        if not self._sig:
            raise OSError("OQS_SIG_new(ML-DSA-65) returned NULL")
        # Keygen swaps liboqs's process-wide RNG: one keygen at a time, and other threads
        # that reach the RNG meanwhile still get OS randomness (only this thread gets xi).
        self._keygen_lock = threading.Lock()
        self._pending = threading.local()
        self._rng = _RANDOMBYTES(self._randombytes)  # must outlive every liboqs call
        self._many = many
        if many is not None:
            many.ls_sign_many.restype = ctypes.c_int
            many.ls_sign_many.argtypes = [
                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
                ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
            ]
            self._sign_fn = ctypes.cast(lib.OQS_SIG_sign, ctypes.c_void_p)
            many.ls_verify_many.restype = None
            many.ls_verify_many.argtypes = [
                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
                ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p,
            ]
            self._verify_fn = ctypes.cast(lib.OQS_SIG_verify, ctypes.c_void_p)

    def _randombytes(self, out: ctypes.Array[ctypes.c_uint8], size: int) -> None:
        seed = getattr(self._pending, "seed", None)
        if seed is not None and size == len(seed):
            self._pending.seed = None
            data = seed
        else:
            data = os.urandom(size)
        ctypes.memmove(out, data, size)

    def signer(self, seed: bytes) -> tuple[bytes, Signer, ManySigner | None]:
        public = ctypes.create_string_buffer(PUBLIC_KEY_SIZE)
        secret = ctypes.create_string_buffer(_OQS_SECRET_KEY_SIZE)
        with self._keygen_lock:
            self._pending.seed = seed
            self._lib.OQS_randombytes_custom_algorithm(self._rng)
            try:
                status = self._lib.OQS_SIG_keypair(self._sig, public, secret)
            finally:
                self._pending.seed = None
                self._lib.OQS_randombytes_switch_algorithm(b"system")
        expected = _pyca_private(seed).public_key().public_bytes_raw()
        if status != 0 or public.raw != expected:
            raise UnsupportedAlgorithm(
                "liboqs did not derive the FIPS 204 key from the seed "
                f"(status {status}); use the pyca backend"
            )
        lib, sig = self._lib, self._sig

        def sign(message: bytes) -> bytes:
            out = ctypes.create_string_buffer(SIGNATURE_SIZE)
            out_len = ctypes.c_size_t(SIGNATURE_SIZE)
            if lib.OQS_SIG_sign(sig, out, ctypes.byref(out_len), message, len(message), secret) != 0:
                raise RuntimeError("liboqs OQS_SIG_sign failed")
            return out.raw[: out_len.value]

        return expected, sign, self._many_signer(secret)

    def _many_signer(self, secret: ctypes.Array[ctypes.c_char]) -> ManySigner | None:
        if self._many is None:
            return None
        sign_many, sign_fn, sig = self._many.ls_sign_many, self._sign_fn, self._sig

        def many(messages: Sequence[bytes]) -> list[bytes]:
            count = len(messages)
            if not count:
                return []
            offsets = _offsets(messages)
            out = ctypes.create_string_buffer(count * SIGNATURE_SIZE)
            lens = (ctypes.c_size_t * count)()
            # one foreign call: ctypes releases the GIL until every message is signed
            failed = sign_many(sign_fn, sig, secret, count, b"".join(messages), offsets,
                               out, SIGNATURE_SIZE, lens)
            if failed:
                raise RuntimeError(f"liboqs OQS_SIG_sign failed (message {failed - 1} of {count})")
            raw = out.raw
            return [raw[i * SIGNATURE_SIZE: i * SIGNATURE_SIZE + lens[i]] for i in range(count)]

        return many

    def verifier(self, public_key: bytes, context: bytes = b"") -> Verifier:
        lib, sig = self._lib, self._sig
        if context:
            def verify_ctx(signature: bytes, message: bytes) -> bool:
                return len(context) <= 255 and lib.OQS_SIG_verify_with_ctx_str(
                    sig, message, len(message), signature, len(signature), context, len(context), public_key) == 0

            return verify_ctx

        def verify(signature: bytes, message: bytes) -> bool:
            return bool(lib.OQS_SIG_verify(sig, message, len(message), signature, len(signature), public_key) == 0)

        return verify

    def many_verifier(self, public_key: bytes) -> ManyVerifier | None:
        if self._many is None:
            return None
        verify_many, verify_fn, sig = self._many.ls_verify_many, self._verify_fn, self._sig

        def many(pairs: Sequence[tuple[bytes, bytes]]) -> list[bool]:
            count = len(pairs)
            if not count:
                return []
            signatures = [signature for signature, _ in pairs]
            messages = [message for _, message in pairs]
            valid = ctypes.create_string_buffer(count)
            # one foreign call: ctypes releases the GIL until every signature is checked
            verify_many(verify_fn, sig, public_key, count, b"".join(messages), _offsets(messages),
                        b"".join(signatures), _offsets(signatures), valid)
            return [flag == 1 for flag in valid.raw]

        return many


def _offsets(chunks: Sequence[bytes]) -> ctypes.Array[ctypes.c_size_t]:
    """Start of each chunk in ``b"".join(chunks)``, plus the end: what the shim takes."""
    offsets = (ctypes.c_size_t * (len(chunks) + 1))()
    at = 0
    for i, chunk in enumerate(chunks):
        offsets[i] = at
        at += len(chunk)
    offsets[len(chunks)] = at
    return offsets


@dataclass(frozen=True)
class _Probe:
    backend: _Backend | None
    reason: str  # why it is unavailable, or where it came from


def _pyca_mldsa() -> types.ModuleType:
    """pyca's ML-DSA module: cryptography >= 48 built with ML-DSA; key files always need it."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa
    except ImportError as exc:
        raise UnsupportedAlgorithm(f"cryptography has no ML-DSA ({exc}); cryptography >= 48 is needed") from exc
    return mldsa


def _pyca_private(seed: bytes) -> MLDSA65PrivateKey:
    key: MLDSA65PrivateKey = _pyca_mldsa().MLDSA65PrivateKey.from_seed_bytes(seed)
    return key


def conformance_failures(backend: _Backend, cases: Sequence[dict[str, str]]) -> list[str]:
    """The Wycheproof-format verify ``cases`` (publicKey, msg, sig, ctx, result, tcId) on
    which ``backend`` gives the wrong verdict; empty if it agrees with every one."""
    failures = []
    for case in cases:
        public, context = bytes.fromhex(case["publicKey"]), bytes.fromhex(case.get("ctx", ""))
        signature, message = bytes.fromhex(case["sig"]), bytes.fromhex(case["msg"])
        accepted = (len(public) == PUBLIC_KEY_SIZE and len(signature) == SIGNATURE_SIZE
                    and backend.verifier(public, context)(signature, message))
        if accepted != (case["result"] == "valid"):
            failures.append(f"{case['source']} tcId {case['tcId']} ({case['comment'] or case['result']}): "
                            f"expected {case['result']}, got {'valid' if accepted else 'invalid'}")
    return failures


def _gate(backend: _Backend, reason: str) -> _Probe:
    """Refuse a backend that disagrees with the FIPS 204 vectors shipped in GATE_VECTORS
    (a fixed subset; tests/ runs the complete suites). Logged once: probes are cached."""
    vectors = json.loads(GATE_VECTORS.read_text(encoding="utf-8"))
    cases = vectors["tests"] + vectors.get("acvp_tests", [])
    failures = conformance_failures(backend, cases)
    if not failures:
        return _Probe(backend, f"{reason}; {len(cases)} FIPS 204 gate vectors pass")
    refusal = (f"ML-DSA backend {backend.name!r} refused: it disagrees with {len(failures)} of "
               f"{len(cases)} FIPS 204 vectors ({'; '.join(failures)})")
    if backend.name == "liboqs":
        refusal += "; rerun scripts/install_liboqs.sh to rebuild it patched"
    _log.warning("%s", refusal)
    return _Probe(None, refusal)


@functools.cache
def _probe_pyca() -> _Probe:
    try:
        _pyca_private(bytes(SEED_SIZE))
    except UnsupportedAlgorithm as exc:
        return _Probe(None, str(exc))
    except _PycaUnsupported as exc:
        return _Probe(None, f"cryptography's OpenSSL has no ML-DSA ({exc})")
    return _gate(_PycaBackend(), "cryptography")


def _liboqs_candidates() -> list[str]:
    """The places liboqs-python searches: $OQS_INSTALL_PATH (else ~/_oqs), then the system."""
    root = Path(os.environ["OQS_INSTALL_PATH"]) if os.environ.get("OQS_INSTALL_PATH") else Path.home() / "_oqs"
    found = [str(p) for sub in ("lib", "lib64") for p in sorted((root / sub).glob("liboqs.so*"))]
    system = ctypes.util.find_library("oqs")
    if system:
        found.append(system)
    return found


@functools.cache
def _probe_liboqs() -> _Probe:
    """Load liboqs without ever importing ``oqs`` (whose import may build liboqs or exit)."""
    candidates = _liboqs_candidates()
    if not candidates:
        return _Probe(None, "no liboqs shared library found ($OQS_INSTALL_PATH, ~/_oqs, system paths)")
    problems = []
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            lib.OQS_init()
            lib.OQS_version.restype = ctypes.c_char_p
            version = lib.OQS_version().decode()
            lib.OQS_SIG_alg_is_enabled.argtypes = [ctypes.c_char_p]
            if tuple(int(part) for part in version.split(".")[:2]) < _OQS_MIN_VERSION:
                problems.append(f"{path}: liboqs {version} predates final FIPS 204 (need >= 0.12)")
            elif not lib.OQS_SIG_alg_is_enabled(ALGORITHM.encode()):
                problems.append(f"{path}: liboqs {version} was built without {ALGORITHM}")
            else:
                many, note = _load_sign_many(path)
                return _gate(_LiboqsBackend(lib, many), f"liboqs {version} at {path}; {note}")
        except Exception as exc:  # noqa: BLE001  (a broken or foreign library must not break the caller)
            problems.append(f"{path}: {exc}")
    return _Probe(None, "; ".join(problems))


def _load_sign_many(liboqs_path: str) -> tuple[ctypes.CDLL | None, str]:
    """The sign_many shim installed beside liboqs (scripts/install_liboqs.sh), if usable."""
    if os.environ.get(SIGN_MANY_ENV, "").strip() == "0":
        return None, f"sign_many shim off (${SIGN_MANY_ENV}=0)"
    path = Path(liboqs_path).parent / SIGN_MANY_LIBRARY
    if not Path(liboqs_path).is_absolute() or not path.exists():
        return None, "no sign_many shim"
    try:
        many = ctypes.CDLL(str(path))
        many.ls_sign_many_abi.restype = ctypes.c_int
        abi = many.ls_sign_many_abi()
    except (OSError, AttributeError) as exc:
        return None, f"sign_many shim unusable ({exc})"
    if abi != _SIGN_MANY_ABI:
        return None, f"sign_many shim has ABI {abi}, expected {_SIGN_MANY_ABI} (rerun scripts/install_liboqs.sh)"
    return many, f"sign_many shim at {path}"


def _probe(name: str) -> _Probe:
    if name == "pyca":
        return _probe_pyca()
    if name == "liboqs":
        # liboqs keys are checked against, and encoded by, pyca: without it, neither works.
        pyca = _probe_pyca()
        return _probe_liboqs() if pyca.backend else pyca
    raise UnsupportedAlgorithm(f"unknown ML-DSA backend {name!r}; choose one of {', '.join(BACKENDS)}")


def available_backends() -> list[str]:
    """Backends usable on this machine, fastest first (each probed once per process)."""
    return [name for name in BACKENDS if _probe(name).backend is not None]


def _backend(name: str | None) -> _Backend:
    name = name or default_backend()
    probe = _probe(name)
    if probe.backend is None:
        hint = " (scripts/install_liboqs.sh installs it)" if name == "liboqs" else ""
        raise UnsupportedAlgorithm(f"ML-DSA backend {name!r} is not available: {probe.reason}{hint}")
    return probe.backend


def default_backend() -> str:
    """$LEDGERSTREAM_MLDSA_BACKEND if set (it must be available), else the fastest available."""
    wanted = os.environ.get(BACKEND_ENV, "").strip().lower()
    if wanted:
        return _backend(wanted).name
    names = available_backends()
    if not names:
        raise UnsupportedAlgorithm(f"no ML-DSA backend is available: {_probe_pyca().reason}")
    return names[0]


class PublicKey:
    """A raw 1952-byte ML-DSA-65 public key; verifies with the chosen (default: fastest) backend."""

    def __init__(self, raw: bytes, backend: str) -> None:
        self._raw = raw
        self._backend = backend
        self._verify: Verifier | None = None
        self._verify_many: ManyVerifier | None = None

    @classmethod
    def from_bytes(cls, raw: bytes, backend: str | None = None) -> PublicKey:
        raw = bytes(raw)
        if len(raw) != PUBLIC_KEY_SIZE:
            raise ConfigError(f"an {ALGORITHM} public key is {PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
        return cls(raw, _backend(backend).name)

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def backend(self) -> str:
        return self._backend

    @functools.cached_property
    def key_id(self) -> str:
        """Lowercase hex SHA-256 of the raw public key: names the key in records and logs."""
        return hashlib.sha256(self._raw).hexdigest()

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return if ``signature`` is valid for ``message``; raise InvalidSignature otherwise."""
        signature = bytes(signature)
        if len(signature) != SIGNATURE_SIZE:
            raise InvalidSignature(
                f"{ALGORITHM} signature has {len(signature)} bytes, expected {SIGNATURE_SIZE}",
                key_id=self.key_id,
                signature_length=len(signature),
            )
        if self._verify is None:
            self._verify = _backend(self._backend).verifier(self._raw)
        if not self._verify(signature, bytes(message)):
            raise InvalidSignature(
                f"{ALGORITHM} signature does not verify under key {self.key_id[:16]}",
                key_id=self.key_id,
                backend=self._backend,
                message_sha256=hashlib.sha256(message).hexdigest(),
            )

    def verify_many(self, pairs: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        """For each ``(signature, message)``: is it valid under this key? In one GIL-free
        call when :attr:`verify_many_releases_gil` (liboqs with the shim). Never raises for
        a bad signature; :meth:`verify` explains one. Signatures and messages may be any
        bytes-like objects (e.g. memoryview slices of the records that hold them)."""
        if self.verify_many_releases_gil:
            assert self._verify_many is not None
            return self._verify_many(pairs)  # joins them into one buffer: no copy here
        pairs = [(bytes(signature), bytes(message)) for signature, message in pairs]
        if self._verify is None:
            self._verify = _backend(self._backend).verifier(self._raw)
        return [len(s) == SIGNATURE_SIZE and self._verify(s, m) for s, m in pairs]

    @functools.cached_property
    def verify_many_releases_gil(self) -> bool:
        """True if :meth:`verify_many` runs without the GIL, so another thread can use it."""
        self._verify_many = _backend(self._backend).many_verifier(self._raw)
        return self._verify_many is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"PublicKey({ALGORITHM}, key_id={self.key_id[:16]}..., backend={self._backend})"


class PrivateKey:
    """An ML-DSA-65 signing key, kept as its 32-byte seed and signing with one backend."""

    def __init__(self, seed: bytes, backend: str, public: PublicKey, sign: Signer,
                 sign_many: ManySigner | None = None) -> None:
        self._seed = seed
        self._backend = backend
        self._public = public
        self._sign = sign
        self._sign_many = sign_many

    @classmethod
    def generate(cls, backend: str | None = None) -> PrivateKey:
        return cls.from_seed(secrets.token_bytes(SEED_SIZE), backend)

    @classmethod
    def from_seed(cls, seed32: bytes, backend: str | None = None) -> PrivateKey:
        """The FIPS 204 KeyGen from xi: the same seed gives the same key on every backend."""
        seed = bytes(seed32)
        if len(seed) != SEED_SIZE:
            raise ConfigError(f"an {ALGORITHM} seed is {SEED_SIZE} bytes, got {len(seed)}")
        impl = _backend(backend)
        raw, sign, sign_many = impl.signer(seed)
        return cls(seed, impl.name, PublicKey(raw, impl.name), sign, sign_many)

    @property
    def seed(self) -> bytes:
        return self._seed

    @property
    def backend(self) -> str:
        return self._backend

    def sign(self, message: bytes) -> bytes:
        """A hedged (randomized) FIPS 204 signature of ``message``, 3309 bytes."""
        return self._sign(bytes(message))

    def sign_many(self, messages: Sequence[bytes]) -> list[bytes]:
        """``[self.sign(m) for m in messages]``; in one GIL-free call when
        :attr:`sign_many_releases_gil` (liboqs with the sign_many shim)."""
        if self._sign_many is None:
            return [self._sign(bytes(m)) for m in messages]
        return self._sign_many([bytes(m) for m in messages])

    @property
    def sign_many_releases_gil(self) -> bool:
        """True if :meth:`sign_many` runs without the GIL, so another thread can use it."""
        return self._sign_many is not None

    def public_key(self) -> PublicKey:
        return self._public

    def __repr__(self) -> str:
        return f"PrivateKey({ALGORITHM}, key_id={self._public.key_id[:16]}..., backend={self._backend})"


def _private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM in the seed-only form, byte for byte as pyca writes it."""
    return _pyca_private(key.seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def save_private_key(key: PrivateKey, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write the key as PKCS#8 PEM with mode 0600; never replaces a file unless ``overwrite``."""
    path = Path(path)
    data = _private_key_pem(key)
    try:
        if not overwrite:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except FileExistsError:
        raise ConfigError(f"{path} already exists; not overwriting a key") from None
    except OSError as exc:
        raise ConfigError(f"cannot write private key {path}: {exc.strerror or exc}") from exc


def load_private_key(source: str | os.PathLike[str] | bytes, *, backend: str | None = None) -> PrivateKey:
    """Read a PKCS#8 PEM ML-DSA-65 key from a path, or from the PEM bytes themselves."""
    where = "private key"
    if not isinstance(source, bytes):
        where = str(source)
        try:
            source = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read private key {where}: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_private_key(source, password=None)
    except TypeError as exc:  # encrypted PEM
        raise ConfigError(f"{where}: encrypted private keys are not supported") from exc
    except (ValueError, _PycaUnsupported) as exc:
        raise ConfigError(f"{where}: not a PEM PKCS#8 {ALGORITHM} private key ({exc})") from exc
    if not isinstance(key, _pyca_mldsa().MLDSA65PrivateKey):
        raise ConfigError(f"{where}: holds a {type(key).__name__}, not an {ALGORITHM} key")
    return PrivateKey.from_seed(key.private_bytes_raw(), backend)


def public_key_pem(pub: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM (RFC 9881 encoding), as pyca writes it."""
    key: MLDSA65PublicKey = _pyca_mldsa().MLDSA65PublicKey.from_public_bytes(pub.raw)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(pem_or_raw: bytes, *, backend: str | None = None) -> PublicKey:
    """Accept SubjectPublicKeyInfo PEM or the raw 1952 bytes."""
    data = bytes(pem_or_raw)
    if not data.lstrip().startswith(b"-----BEGIN"):
        if len(data) != PUBLIC_KEY_SIZE:
            raise ConfigError(f"neither a PEM public key nor {PUBLIC_KEY_SIZE} raw bytes ({len(data)} bytes)")
        return PublicKey.from_bytes(data, backend)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, _PycaUnsupported) as exc:
        raise ConfigError(f"not a PEM {ALGORITHM} public key ({exc})") from exc
    if not isinstance(key, _pyca_mldsa().MLDSA65PublicKey):
        raise ConfigError(f"PEM holds a {type(key).__name__}, not an {ALGORITHM} key")
    return PublicKey.from_bytes(key.public_bytes_raw(), backend)


def _calls_per_second(call: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        call()
        count += 1
    return count / elapsed


def measure_sign_rate(backend: str, seconds: float = 1.0) -> float:
    """Signatures per second of one thread with ``backend`` (256-byte messages)."""
    key = PrivateKey.generate(backend)
    message = bytes(256)
    return _calls_per_second(lambda: key.sign(message), seconds)


def measure_verify_rate(backend: str, seconds: float = 1.0) -> float:
    """Signature checks per second of one thread with ``backend`` (256-byte messages)."""
    key = PrivateKey.generate(backend)
    message = bytes(256)
    signature, pub = key.sign(message), key.public_key()
    return _calls_per_second(lambda: pub.verify(signature, message), seconds)
