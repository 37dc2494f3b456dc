"""Only the compiled part of ledgerstream; everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds; the verifier's
``avro_fast.read_entry`` falls back to fastavro (docs/verifiers.md) and the signer's
``avro_fast.read_valid_action`` and its dedup window (``signer_worker/dedup.py``) to the
Python reference paths (docs/signer.md). The entry reader links OpenSSL's libcrypto (its
SHA-256, as CPython's hashlib): building it needs the headers (Debian: libssl-dev).
"""
from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra"]
setup(ext_modules=[Extension("ledgerstream.core.wire._entry_reader", ["ledgerstream/core/wire/_entry_reader.c"],
                             libraries=["crypto"], extra_compile_args=_FLAGS, optional=True),
                   Extension("ledgerstream.signer_worker._dedup_table", ["signer_worker/_dedup_table.c"],
                             extra_compile_args=_FLAGS, optional=True)])
