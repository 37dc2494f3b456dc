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
#
# Also builds $PREFIX/lib/libledgerstream_sign_many.so, a 40-line C shim that signs (or
# verifies) a whole chunk of messages in one ctypes call, so a signing (or verifying)
# thread holds no GIL for the whole chunk (PrivateKey.sign_many, PublicKey.verify_many;
# docs/signer.md, docs/verifiers.md). It calls the OQS_SIG_sign / OQS_SIG_verify that
# ledgerstream.core.mldsa hands it, so it needs no liboqs headers. Without the shim the
# signer signs on its loop thread, as before. `install_liboqs.sh --shim-only` builds just
# the shim next to an existing $PREFIX/lib/liboqs.so (e.g. one built by the Dockerfile).
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

SHIM_ONLY=0
[ "${1:-}" = "--shim-only" ] && SHIM_ONLY=1

if [ "$SHIM_ONLY" = 1 ]; then
  [ -e "$PREFIX/lib/liboqs.so" ] || { echo "install_liboqs: no $PREFIX/lib/liboqs.so for the shim" >&2; exit 2; }
elif have_lib; then
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
  local src
  src="$(mktemp -d)"
  cat > "$src/sign_many.c" <<EOF
/* ledgerstream: sign or verify a chunk of messages with liboqs in one call
   (scripts/install_liboqs.sh). One foreign call per chunk: the caller's Python thread
   releases the GIL once for the whole chunk instead of once per message. */
#include <stddef.h>
#include <stdint.h>

/* OQS_SIG_sign(const OQS_SIG *sig, uint8_t *signature, size_t *signature_len,
                const uint8_t *message, size_t message_len, const uint8_t *secret_key) */
typedef int (*oqs_sig_sign_fn)(const void *, uint8_t *, size_t *, const uint8_t *, size_t, const uint8_t *);
/* OQS_SIG_verify(const OQS_SIG *sig, const uint8_t *message, size_t message_len,
                  const uint8_t *signature, size_t signature_len, const uint8_t *public_key) */
typedef int (*oqs_sig_verify_fn)(const void *, const uint8_t *, size_t, const uint8_t *, size_t, const uint8_t *);

int ls_sign_many_abi(void) { return $SHIM_ABI; }

/* Message i is messages[offsets[i] .. offsets[i + 1]); its signature goes to
   signatures + i * stride and its length to signature_lens[i]. Returns 0, or i + 1 if
   OQS_SIG_sign failed on message i (nothing after it is signed). */
int ls_sign_many(oqs_sig_sign_fn sign, const void *sig, const uint8_t *secret_key, size_t count,
                 const uint8_t *messages, const size_t *offsets,
                 uint8_t *signatures, size_t stride, size_t *signature_lens) {
  for (size_t i = 0; i < count; i++) {
    signature_lens[i] = stride;
    if (sign(sig, signatures + i * stride, &signature_lens[i], messages + offsets[i],
             offsets[i + 1] - offsets[i], secret_key) != 0)
      return (int)(i + 1);
  }
  return 0;
}

/* Message i is messages[message_offsets[i] .. message_offsets[i + 1]), its signature
   signatures[signature_offsets[i] .. signature_offsets[i + 1]); valid[i] = 1 if
   OQS_SIG_verify accepts it under public_key, else 0. Every message is checked. */
void ls_verify_many(oqs_sig_verify_fn verify, const void *sig, const uint8_t *public_key, size_t count,
                    const uint8_t *messages, const size_t *message_offsets,
                    const uint8_t *signatures, const size_t *signature_offsets, uint8_t *valid) {
  for (size_t i = 0; i < count; i++)
    valid[i] = verify(sig, messages + message_offsets[i], message_offsets[i + 1] - message_offsets[i],
                      signatures + signature_offsets[i], signature_offsets[i + 1] - signature_offsets[i],
                      public_key) == 0;
}
EOF
  mkdir -p "$PREFIX/lib"
  if ! cc -O2 -fPIC -shared -Wall -Wextra -Werror -o "$SHIM.tmp" "$src/sign_many.c"; then
    rm -rf "$src" "$SHIM.tmp"
    return 1
  fi
  rm -rf "$src"
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
