"""Hypothesis settings for the fuzz targets, imported by each of them (not a conftest.py: a second
conftest module would shadow tests/conftest.py for "from conftest import ..."): a short bounded run by default (CI), longer with
LEDGERSTREAM_FUZZ_EXAMPLES=N (docs/fuzzing.md)."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ledgerstream-fuzz",
    max_examples=int(os.environ.get("LEDGERSTREAM_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,  # no example database written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    print_blob=True,  # a failure prints the blob to reproduce it with @reproduce_failure
)
settings.load_profile("ledgerstream-fuzz")
