"""Apache Avro's Java library (tests/interop/avrojava), resolved once into the cache with
``mvn``, and the small decoder there run with Java's source launcher: the tests that read our
records with code nobody here wrote share it."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ledgerstream.core.config import cache_dir

SOURCE = Path(__file__).resolve().parents[1] / "interop" / "avrojava"


def _unavailable(message: str) -> None:
    """Skip on a developer's machine; fail under CI=true, where the tools must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def avro_jars() -> Path:
    """The folder of Apache Avro's jars and their runtime dependencies."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None or mvn is None:
        _unavailable("java and mvn are needed for the Apache Avro (Java) interop test")
    lib = cache_dir() / f"avro-java-{hashlib.sha256((SOURCE / 'pom.xml').read_bytes()).hexdigest()[:16]}"
    if (lib / ".complete").exists():
        return lib
    with tempfile.TemporaryDirectory(prefix="ledgerstream-avro-") as tmp:
        shutil.copy(SOURCE / "pom.xml", tmp)
        staging = Path(tmp) / "lib"
        done = subprocess.run([mvn, "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
                               "-DincludeScope=runtime"], cwd=tmp, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            _unavailable(f"mvn could not fetch Apache Avro for Java:\n{(done.stdout + done.stderr)[-2000:]}")
        if lib.exists():
            shutil.rmtree(lib)
        lib.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(lib))
    (lib / ".complete").write_text("ok")
    return lib


def decode_with_java(schemas: Path, records: list[tuple[str, bytes]]) -> tuple[dict[str, str], list[dict]]:
    """Decode ``(record name, single-object bytes)`` pairs with Apache Avro's
    BinaryMessageDecoder; returns (Java's header fingerprint hex by record name, one decoded
    record, or ``{"error": <exception class>}``, per input)."""
    lib = avro_jars()
    with tempfile.TemporaryDirectory(prefix="ledgerstream-avro-in-") as tmp:
        inputs = Path(tmp) / "records.txt"
        inputs.write_text("".join(f"{name} {data.hex()}\n" for name, data in records))
        done = subprocess.run([shutil.which("java") or "java", "-cp", f"{lib}/*", str(SOURCE / "Decode.java"),
                               str(schemas), str(inputs)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fingerprints: dict[str, str] = {}
    decoded: list[dict] = []
    for line in done.stdout.splitlines():
        if line.startswith("fingerprint "):
            _, name, fp = line.split()
            fingerprints[name] = fp
        else:
            decoded.append(json.loads(line))
    assert len(decoded) == len(records), done.stdout[-3000:]
    return fingerprints, decoded
