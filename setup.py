"""Only the compiled part of ledgerstream; everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and
``ledgerstream.core.wire.avro_fast.read_entry`` falls back to fastavro (docs/verifiers.md).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("ledgerstream.core.wire._entry_reader", ["ledgerstream/core/wire/_entry_reader.c"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"], optional=True)])
