#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtualenv in .venv with ledgerstream and
# everything its tests and dev stack need, the fast ML-DSA backend (liboqs, built
# from the crates.io source package), and the Apache Kafka jars (Maven Central).
# Idempotent: a second run only checks. Set LEDGERSTREAM_SKIP_LIBOQS=1 to keep the
# pyca backend only, LEDGERSTREAM_SKIP_BROWSER=1 to skip Chromium (dashboard tests).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required: $2" >&2; exit 2; }; }
need python3 "install Python 3.11+"
need java "install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
need mvn "install Apache Maven (Debian: apt-get install maven)"
need openssl "install OpenSSL (Debian: apt-get install openssl)"

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: Python 3.11+ is required, found {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing ledgerstream[dev,adapters] into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,adapters]'
# setup.py's extension is optional: say so when it could not be built (docs/verifiers.md)
if ! .venv/bin/python -c "import sys; from ledgerstream.core.wire import avro_fast; sys.exit(not avro_fast.compiled())"; then
  echo "setup: warning: no C compiler, Python headers or OpenSSL headers (Debian: libssl-dev): the compiled" \
       "entry reader was not built; verifiers decode every entry with fastavro and the signer takes its" \
       "reference paths (slower)" >&2
fi

if [ "${LEDGERSTREAM_SKIP_LIBOQS:-0}" != "1" ]; then
  echo "== liboqs (fast ML-DSA-65 backend)"
  if command -v cargo >/dev/null && command -v cmake >/dev/null; then
    PYTHON=.venv/bin/python bash scripts/install_liboqs.sh || { echo "setup: liboqs build failed; the pyca backend is used" >&2; [ "${CI:-}" != "true" ] || exit 1; }
  else
    echo "setup: cargo/cmake missing; skipping liboqs, the pyca backend is used" >&2
  fi
fi

if [ "${LEDGERSTREAM_SKIP_BROWSER:-0}" != "1" ] && [ -f scripts/install_browser.sh ]; then
  echo "== headless Chromium (dashboard browser tests)"
  bash scripts/install_browser.sh
fi

if command -v go >/dev/null 2>&1; then
  echo "== litewitness (torchwood, a third-party tlog witness for the dev stack; built with Go, cached)"
  if ! command -v ssh-agent >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client >/dev/null; }
  fi
  command -v ssh-agent >/dev/null 2>&1 || echo "setup: no ssh-agent (openssh-client): the dev stack runs without litewitness" >&2
  .venv/bin/python -c "from ledgerstream.stack.litewitness import build; print(build())" \
    || { echo "setup: building litewitness failed; the dev stack runs without it" >&2; [ "${CI:-}" != "true" ] || exit 1; }
  echo "== Tessera harness (bench signer --compare tessera; built with Go, cached)"
  .venv/bin/python -c "from ledgerstream.tools.bench_tessera import build; print(build())" \
    || { echo "setup: building the Tessera harness failed; bench signer --compare tessera will say so" >&2; [ "${CI:-}" != "true" ] || exit 1; }
else
  echo "setup: go missing: the dev stack runs without litewitness (docs/witnesses.md)" >&2
fi

echo "== Apache Kafka jars (Maven Central, cached)"
.venv/bin/python -c "from ledgerstream.stack.kafka import ensure_jars; print(ensure_jars())"
echo "== ready: .venv/bin/ledgerstream --help"
