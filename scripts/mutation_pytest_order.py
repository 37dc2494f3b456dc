"""pytest plugin for scripts/mutation.py: run the selected tests round-robin across test
functions (the first case of every function, then the second of each, ...), and the tests
named in $MUTATION_RUN_LAST (comma-separated node id parts) after all others.

The selection is the same, only the order changes: with ``-x`` a mutant is usually killed by
the first case of some function, instead of after a thousand cases of one parametrised
vector test or a slow randomised test. Loaded with ``-p mutation_pytest_order`` (scripts/ on
PYTHONPATH)."""
from __future__ import annotations

import os
from itertools import zip_longest


def pytest_collection_modifyitems(items: list) -> None:
    last = [part for part in os.environ.get("MUTATION_RUN_LAST", "").split(",") if part]
    groups: dict[tuple[str, str], list] = {}
    for item in items:
        groups.setdefault((item.nodeid.split("::")[0], getattr(item, "originalname", item.name)), []).append(item)
    ordered = [item for row in zip_longest(*groups.values()) for item in row if item is not None]
    items[:] = ([i for i in ordered if not any(p in i.nodeid for p in last)]
                + [i for i in ordered if any(p in i.nodeid for p in last)])
