#!/usr/bin/env bash
# Run the compiled entry reader's fuzz target under AddressSanitizer + UBSan (docs/fuzzing.md).
# Builds ledgerstream/core/wire/_entry_reader.c with -fsanitize=address,undefined into a temp dir and
# makes Python load that build instead of the installed one; nothing in the checkout changes.
# Usage: scripts/fuzz_asan.sh [pytest args]   (LEDGERSTREAM_FUZZ_EXAMPLES=N for a longer run)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
suffix="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
so="$build/_entry_reader$suffix"
gcc -shared -fPIC -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -I"$include" "$root/ledgerstream/core/wire/_entry_reader.c" -o "$so"
cat > "$build/sitecustomize.py" <<PY
import importlib.util, sys
spec = importlib.util.spec_from_file_location("ledgerstream.core.wire._entry_reader", "$so")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["ledgerstream.core.wire._entry_reader"] = module
PY
cd "$root"
# detect_leaks=0: CPython itself "leaks" at exit; we look for memory errors and UB in our reader
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$build${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c "from ledgerstream.core.wire import avro_fast as a; assert a.compiled() and a._entry_reader.__file__ == '$so', \
    'the sanitized reader is not the one in use'; print('using', a._entry_reader.__file__)"
"$python" -m pytest -p no:cacheprovider -q tests/fuzz/test_fuzz_codec.py tests/unit/test_entry_reader.py \
    tests/unit/test_signer_fast_path.py "$@"
