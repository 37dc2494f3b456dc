#!/usr/bin/env bash
# Run the compiled parts' fuzz targets and tests under AddressSanitizer + UBSan (docs/fuzzing.md).
# Builds ledgerstream/core/wire/_entry_reader.c and signer_worker/_dedup_table.c with
# -fsanitize=address,undefined into a temp dir and makes Python load those builds instead of the
# installed ones; nothing in the checkout changes.
# Usage: scripts/fuzz_asan.sh [pytest args]   (LEDGERSTREAM_FUZZ_EXAMPLES=N for a longer run)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
suffix="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
so="$build/_entry_reader$suffix"
table="$build/_dedup_table$suffix"
for pair in "$root/ledgerstream/core/wire/_entry_reader.c:$so" "$root/signer_worker/_dedup_table.c:$table"; do
    gcc -shared -fPIC -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
        -I"$include" "${pair%%:*}" -o "${pair##*:}" -lcrypto
done
cat > "$build/sitecustomize.py" <<PY
import importlib.util, sys
for name, path in (("ledgerstream.core.wire._entry_reader", "$so"),
                   ("ledgerstream.signer_worker._dedup_table", "$table")):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
PY
cd "$root"
# detect_leaks=0: CPython itself "leaks" at exit; we look for memory errors and UB in our reader
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$build${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c "from ledgerstream.core.wire import avro_fast as a; from ledgerstream.signer_worker import dedup as d; \
    assert a.compiled() and a._entry_reader.__file__ == '$so' and d._dedup_table.__file__ == '$table', \
    'the sanitized builds are not the ones in use'; print('using', a._entry_reader.__file__, d._dedup_table.__file__)"
"$python" -m pytest -p no:cacheprovider -q tests/fuzz/test_fuzz_codec.py tests/unit/test_entry_reader.py \
    tests/unit/test_signer_fast_path.py tests/unit/test_signer_dedup.py "$@"
