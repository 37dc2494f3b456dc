#!/usr/bin/env bash
# Install what the dashboard browser tests and the SIEM format tests need (idempotent).
#   - Debian's headless Chromium and its chromedriver (no browser download from elsewhere);
#   - selenium (driven with Debian's chromedriver: Selenium Manager is never used);
#   - the well-kept parsers/schemas the SIEM format tests check against.
# Called by .ci/run; safe to run again (installs only what is missing).
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser.sh: chromium/chromium-driver missing and not root; run: sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi

# the project's virtualenv when there is one (scripts/setup.sh makes it), else python3
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
"$PY" - <<'PY' || "$PY" -m pip install -q --disable-pip-version-check "selenium>=4.20" "pycef==1.11" "syslog-rfc5424-parser==0.3.2" "ocsf-json-schema==1.2.0" "jsonschema>=4.20" "pyyaml>=6"
import importlib.util, sys
mods = ["selenium", "pycef", "syslog_rfc5424_parser", "ocsf_json_schema", "jsonschema", "yaml"]
sys.exit(0 if all(importlib.util.find_spec(m) for m in mods) else 1)
PY

echo "install_browser.sh: $(chromium --version 2>/dev/null || echo 'chromium ?'); $(chromedriver --version 2>/dev/null | head -1)"
