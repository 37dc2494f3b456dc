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
# The ML-DSA-65 AVX2 verifier is patched first (scripts/liboqs-mldsa-avx2-*.patch; FIPS 204
# Algorithms 8 and 40), and a build is installed only if it passes the vendored Wycheproof
# verify vectors (scripts/check_liboqs_vectors.py; docs/decisions.md D24).
#
# Result: $PREFIX/lib/liboqs.so, PREFIX = $OQS_INSTALL_PATH or ~/_oqs (where the
# probe in ledgerstream.core.mldsa looks). Needs cargo, cmake and a C compiler (ninja
# optional); about 30 s on 2 cores. Safe to run again: a good install is left alone.
#
# Also builds $PREFIX/lib/libledgerstream_sign_many.so from scripts/sign_many_shim.c, a C
# shim that signs (or verifies) a whole chunk of messages in one ctypes call, so a signing
# (or verifying) thread holds no GIL for the whole chunk (PrivateKey.sign_many, PublicKey.verify_many;
# docs/signer.md, docs/verifiers.md). It calls the OQS_SIG_sign / OQS_SIG_verify that
# ledgerstream.core.mldsa hands it, so it needs no liboqs headers. Without the shim the
# signer signs on its loop thread, as before. `install_liboqs.sh --shim-only` builds just
# the shim next to an existing $PREFIX/lib/liboqs.so.
set -euo pipefail

OQS_SYS_VERSION="0.11.0+liboqs-0.13.0"
LIBOQS_VERSION="0.13.0"
LIBOQS_PYTHON_VERSION="0.16.0.1"
PREFIX="${OQS_INSTALL_PATH:-$HOME/_oqs}"
PYTHON="${PYTHON:-python3}"  # only to check the library
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Two fixes to liboqs 0.13's ML-DSA-65 AVX2 verifier (docs/decisions.md D24): the missing
# ||z||_inf < gamma1 - beta check (FIPS 204 Algorithm 8, line 13) and UseHint at r0 == 0
# (Algorithm 40). The marker beside the library names the patches, so an older build is rebuilt.
PATCHES=("$HERE/liboqs-mldsa-avx2-norm-check.patch" "$HERE/liboqs-mldsa-avx2-use-hint.patch")
MARKER_NAME="ledgerstream-liboqs-patch.sha256"
# The vendored Wycheproof vectors every installed library must pass (docs/decisions.md D24).
VECTORS="${LIBOQS_VECTORS:-$HERE/../tests/vectors/wycheproof/mldsa_65_verify_test.json}"

patch_id() { cat "${PATCHES[@]}" | sha256sum | cut -d' ' -f1; }

# The library passes the vendored vectors (run after every build and before trusting an install).
check_vectors() {
  "$PYTHON" "$HERE/check_liboqs_vectors.py" "$1" "$VECTORS"
}

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
  [ "$(cat "$PREFIX/lib/$MARKER_NAME" 2>/dev/null)" = "$(patch_id)" ] || {
    echo "install_liboqs: $PREFIX/lib/liboqs.so predates the ML-DSA patches; rebuilding" >&2
    return 1
  }
  check_vectors "$PREFIX/lib/liboqs.so"
}

SHIM_ONLY=0
[ "${1:-}" = "--shim-only" ] && SHIM_ONLY=1

if [ "$SHIM_ONLY" = 1 ]; then
  [ -e "$PREFIX/lib/liboqs.so" ] || { echo "install_liboqs: no $PREFIX/lib/liboqs.so for the shim" >&2; exit 2; }
elif have_lib; then
  echo "liboqs $LIBOQS_VERSION already in $PREFIX/lib"
else
  for tool in cargo cmake cc patch; do
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
  for p in "${PATCHES[@]}"; do
    patch -p1 --forward --silent -d "$src" < "$p" \
      || { echo "install_liboqs: $p does not apply to liboqs $LIBOQS_VERSION; refusing to build" >&2; exit 1; }
  done
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
  check_vectors "$(find "$work/build" -name liboqs.so | head -n 1)" \
    || { echo "install_liboqs: the built liboqs fails the FIPS 204 vectors; not installing it" >&2; exit 1; }
  cmake --install "$work/build" >/dev/null
  patch_id > "$PREFIX/lib/$MARKER_NAME"
  have_lib || { echo "install_liboqs: built library does not load or lacks ML-DSA-65" >&2; exit 1; }
  echo "liboqs $LIBOQS_VERSION installed in $PREFIX/lib"
fi

SHIM="$PREFIX/lib/libledgerstream_sign_many.so"
SHIM_ABI=2  # must equal ledgerstream.core.mldsa._SIGN_MANY_ABI

have_shim() {
  [ -e "$SHIM" ] || return 1
  "$PYTHON" - "$SHIM" "$SHIM_ABI" <<'EOF'
import ctypes, sys
sys.exit(0 if ctypes.CDLL(sys.argv[1]).ls_sign_many_abi() == int(sys.argv[2]) else 1)
EOF
}

build_shim() {
  command -v cc >/dev/null || { echo "install_liboqs: 'cc' is required for the sign_many shim" >&2; return 1; }
  mkdir -p "$PREFIX/lib"
  if ! cc -O2 -fPIC -shared -Wall -Wextra -Werror -DLS_SHIM_ABI="$SHIM_ABI" -o "$SHIM.tmp" "$HERE/sign_many_shim.c"; then
    rm -f "$SHIM.tmp"
    return 1
  fi
  mv "$SHIM.tmp" "$SHIM"
  have_shim
}

if have_shim; then
  echo "sign_many shim already in $PREFIX/lib"
elif build_shim; then
  echo "sign_many shim installed in $PREFIX/lib"
else  # not fatal: liboqs works without it (the signer then signs on its loop thread)
  echo "install_liboqs: warning: could not build the sign_many shim; signing stays on the signer's loop thread" >&2
fi
