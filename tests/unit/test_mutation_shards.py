"""scripts/mutation.py --jobs: the pending mutants split into disjoint shares, and every
shard's results come back into the session (a lost result would be a mutant never run)."""
from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutation.py"

# Cosmic Ray 8.7.0's session tables, as `cosmic-ray init` creates them
SCHEMA = """
CREATE TABLE work_items (job_id VARCHAR NOT NULL, PRIMARY KEY (job_id));
CREATE TABLE mutation_specs (module_path VARCHAR, operator_name VARCHAR, operator_args JSON, occurrence INTEGER,
    start_pos_row INTEGER, start_pos_col INTEGER, end_pos_row INTEGER, end_pos_col INTEGER, definition_name VARCHAR,
    job_id VARCHAR NOT NULL, PRIMARY KEY (job_id), FOREIGN KEY(job_id) REFERENCES work_items (job_id));
CREATE TABLE work_results (worker_outcome VARCHAR(9), output TEXT, test_outcome VARCHAR(11), diff TEXT,
    job_id VARCHAR NOT NULL, PRIMARY KEY (job_id), FOREIGN KEY(job_id) REFERENCES work_items (job_id));
"""


@pytest.fixture(scope="module")
def mutation():
    spec = importlib.util.spec_from_file_location("mutation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _session(path: Path, jobs: int, finished: set[str]) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        for k in range(jobs):
            job = f"job{k:02d}"
            db.execute("insert into work_items values (?)", (job,))
            db.execute("insert into mutation_specs values ('m.py', 'op', '{}', ?, 1, 0, 1, 1, 'f', ?)", (k, job))
        db.executemany("insert into work_results values ('NORMAL', '', 'KILLED', '', ?)", [(j,) for j in finished])


def _pending(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {j for (j,) in db.execute(
            "select job_id from work_items where job_id not in (select job_id from work_results)")}


def test_shares_are_disjoint_and_their_results_all_reach_the_session(mutation, tmp_path: Path) -> None:
    session = tmp_path / "s.sqlite"
    _session(session, 10, finished={"job00", "job03", "job07"})
    pending = sorted(_pending(session))
    shards = []
    for k in range(2):
        path = tmp_path / f"s.shard{k}.sqlite"
        shutil.copyfile(session, path)
        mutation._restrict_jobs(path, set(pending[k::2]))
        shards.append(path)
    shares = [_pending(p) for p in shards]
    assert shares[0] | shares[1] == set(pending) and not shares[0] & shares[1]
    with sqlite3.connect(shards[0]) as db:  # a shard keeps no spec of another's mutants
        assert {j for (j,) in db.execute("select job_id from mutation_specs")} == shares[0] | {"job00", "job03",
                                                                                                "job07"}
    for path, share in zip(shards, shares):  # each shard runs its share ...
        with sqlite3.connect(path) as db:
            db.executemany("insert into work_results values ('NORMAL', 'out', 'SURVIVED', 'd', ?)",
                           [(j,) for j in share])
        mutation._merge_results(session, path)  # ... and comes back
    assert _pending(session) == set()
    with sqlite3.connect(session) as db:
        outcomes = dict(db.execute("select job_id, test_outcome from work_results"))
    assert outcomes == {**{j: "SURVIVED" for j in pending}, **{j: "KILLED" for j in ("job00", "job03", "job07")}}


def test_a_shard_that_ended_early_leaves_its_unrun_mutants_pending(mutation, tmp_path: Path) -> None:
    session = tmp_path / "s.sqlite"
    _session(session, 4, finished=set())
    shard = tmp_path / "s.shard0.sqlite"
    shutil.copyfile(session, shard)
    mutation._restrict_jobs(shard, {"job01", "job02"})
    with sqlite3.connect(shard) as db:  # interrupted after one mutant
        db.execute("insert into work_results values ('NORMAL', '', 'KILLED', '', 'job01')")
    mutation._merge_results(session, shard)
    assert _pending(session) == {"job00", "job02", "job03"}  # --resume runs these, and only these
