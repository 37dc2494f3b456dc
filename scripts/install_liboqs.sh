#!/usr/bin/env bash
# Install the liboqs shared library (ML-DSA only) for the fast ML-DSA-65 backend, idempotently.
#
# Why this route: Debian bookworm ships no liboqs, and no PyPI package ships a compiled
# liboqs >= 0.12 for Linux (liboqs-python is pure Python and, when it finds no library,
# tries to git-clone liboqs, which cannot work here). The crates.io package
# oqs-sys 0.11.0+liboqs-0.13.0 vendors the liboqs 0.13.0 source, so we fetch it with
# cargo (checksum verified against the crates.io index) and build it with cmake.
# ledgerstream.core.mldsa drives the library through ctypes; liboqs-python is NOT
# installed, because its only PyPI release (0.16) needs symbols liboqs 0.13 lacks.
#
# Result: $PREFIX/lib/liboqs.so, PREFIX = $OQS_INSTALL_PATH or ~/_oqs (where the
# probe in ledgerstream.core.mldsa looks). Needs cargo, cmake and a C compiler (ninja
# optional); about 30 s on 2 cores. Safe to run again: a good install is left alone.
set -euo pipefail

OQS_SYS_VERSION="0.11.0+liboqs-0.13.0"
LIBOQS_VERSION="0.13.0"
LIBOQS_PYTHON_VERSION="0.16.0.1"
PREFIX="${OQS_INSTALL_PATH:-$HOME/_oqs}"
PYTHON="${PYTHON:-python3}"  # only to check the library

have_lib() {
  [ -e "$PREFIX/lib/liboqs.so" ] || return 1
  "$PYTHON" - "$PREFIX/lib/liboqs.so" "$LIBOQS_VERSION" <<'EOF'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.OQS_version.restype = ctypes.c_char_p
lib.OQS_SIG_alg_is_enabled.restype = ctypes.c_int
ok = lib.OQS_version().decode() == sys.argv[2] and lib.OQS_SIG_alg_is_enabled(b"ML-DSA-65") == 1
sys.exit(0 if ok else 1)
EOF
}

if have_lib; then
  echo "liboqs $LIBOQS_VERSION already in $PREFIX/lib"
else
  for tool in cargo cmake cc; do
    command -v "$tool" >/dev/null || { echo "install_liboqs: '$tool' is required" >&2; exit 2; }
  done
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/fetch/src"
  : > "$work/fetch/src/lib.rs"
  cat > "$work/fetch/Cargo.toml" <<EOF
[package]
name = "fetch-liboqs-source"
version = "0.0.0"
edition = "2021"

[dependencies]
oqs-sys = { version = "=$OQS_SYS_VERSION", default-features = false }
EOF
  (cd "$work/fetch" && cargo vendor --quiet --versioned-dirs "$work/vendor" >/dev/null)
  src="$work/vendor/oqs-sys-$OQS_SYS_VERSION/liboqs"
  [ -f "$src/CMakeLists.txt" ] || { echo "install_liboqs: no liboqs source in the crate" >&2; exit 1; }
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake "${generator[@]}" -S "$src" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON \
    -DOQS_BUILD_ONLY_LIB=ON \
    -DOQS_USE_OPENSSL=OFF \
    -DOQS_MINIMAL_BUILD="SIG_ml_dsa_44;SIG_ml_dsa_65;SIG_ml_dsa_87" \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DCMAKE_INSTALL_LIBDIR=lib >/dev/null
  cmake --build "$work/build" --parallel "$(nproc)" >/dev/null
  cmake --install "$work/build" >/dev/null
  have_lib || { echo "install_liboqs: built library does not load or lacks ML-DSA-65" >&2; exit 1; }
  echo "liboqs $LIBOQS_VERSION installed in $PREFIX/lib"
fi
