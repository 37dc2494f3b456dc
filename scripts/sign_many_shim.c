/* ledgerstream: sign or verify a chunk of messages with liboqs in one call
   (built by scripts/install_liboqs.sh). One foreign call per chunk: the caller's Python thread
   releases the GIL once for the whole chunk instead of once per message. */
#include <stddef.h>
#include <stdint.h>

/* OQS_SIG_sign(const OQS_SIG *sig, uint8_t *signature, size_t *signature_len,
                const uint8_t *message, size_t message_len, const uint8_t *secret_key) */
typedef int (*oqs_sig_sign_fn)(const void *, uint8_t *, size_t *, const uint8_t *, size_t, const uint8_t *);
/* OQS_SIG_verify(const OQS_SIG *sig, const uint8_t *message, size_t message_len,
                  const uint8_t *signature, size_t signature_len, const uint8_t *public_key) */
typedef int (*oqs_sig_verify_fn)(const void *, const uint8_t *, size_t, const uint8_t *, size_t, const uint8_t *);

int ls_sign_many_abi(void) { return LS_SHIM_ABI; }  /* -DLS_SHIM_ABI=..., the script's SHIM_ABI */

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
