"""An independent RFC 9162 verifier for the tests, written from the RFC text alone.

It deliberately shares no code with ``ledgerstream.core.merkle`` (do not import it here):
the signer's tree and this checker must agree only because both follow RFC 9162
(section 2.1.1 hashing, 2.1.3.2 inclusion verification, 2.1.4.2 consistency
verification). The root of a list of leaves is computed by the RFC's recursive
definition of MTH, the slow and obvious way.

Verification raises :class:`ProofFailed`; nothing here returns a bare bool.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

HASH_LEN = 32


class ProofFailed(Exception):
    """A proof is malformed or does not reproduce the expected root(s)."""


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash_leaf(leaf_input: bytes) -> bytes:
    """RFC 9162 2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return _h(b"\x00" + leaf_input)


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return _h(b"\x01" + left + right)


def _largest_power_of_two_below(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def mth_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) by the recursive definition, given the leaf hashes (not the inputs)."""
    n = len(leaf_hashes)
    if n == 0:
        return _h(b"")
    if n == 1:
        return leaf_hashes[0]
    k = _largest_power_of_two_below(n)
    return hash_children(mth_from_leaf_hashes(leaf_hashes[:k]), mth_from_leaf_hashes(leaf_hashes[k:]))


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_LEN:
        raise ProofFailed(f"{what} is not a {HASH_LEN}-byte hash")
    return bytes(value)


def verify_inclusion(leaf_hash: bytes, leaf_index: int, tree_size: int, path: Sequence[bytes],
                     root: bytes) -> None:
    """RFC 9162 section 2.1.3.2, step by step."""
    leaf_hash = _check_hash(leaf_hash, "leaf hash")
    root = _check_hash(root, "root")
    path = [_check_hash(p, f"path[{i}]") for i, p in enumerate(path)]
    # 1. If leaf_index is greater than or equal to tree_size, then fail.
    if not 0 <= leaf_index < tree_size:
        raise ProofFailed(f"leaf index {leaf_index} not below tree size {tree_size}")
    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn, sn = leaf_index, tree_size - 1
    # 3. Set r to hash.
    r = leaf_hash
    # 4. For each value p in the inclusion_path array:
    for p in path:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ProofFailed("inclusion path is too long")
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = hash_children(p, r)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #     either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # Otherwise: set r to HASH(0x01 || r || p).
            r = hash_children(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. Compare sn to 0. Compare r against the root_hash. If sn is equal to 0 and r and
    #    the root_hash are equal, then the log has proven the inclusion of hash.
    if sn != 0:
        raise ProofFailed("inclusion path is too short")
    if r != root:
        raise ProofFailed(f"inclusion path yields root {r.hex()}, expected {root.hex()}")


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       consistency_path: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2, step by step (first == 0 and first == second handled as
    the RFC's section 2.1.4.1 defines those proofs: empty)."""
    first_hash = _check_hash(first_hash, "first root")
    second_hash = _check_hash(second_hash, "second root")
    path = [_check_hash(p, f"path[{i}]") for i, p in enumerate(consistency_path)]
    if not 0 <= first <= second:
        raise ProofFailed(f"bad sizes {first} -> {second}")
    if first == second:
        if path:
            raise ProofFailed("proof between equal sizes must be empty")
        if first_hash != second_hash:
            raise ProofFailed("equal sizes with different roots")
        return
    if first == 0:
        if path:
            raise ProofFailed("proof from the empty tree must be empty")
        if first_hash != _h(b""):
            raise ProofFailed("the root of the empty tree is SHA-256 of the empty string")
        return
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not path:
        raise ProofFailed("empty consistency path")
    # 2. If first is an exact power of 2, then prepend first_hash to the path array.
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the path array:
    for c in path[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ProofFailed("consistency path is too long")
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr). Set sr to HASH(0x01 || c || sr).
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #     either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # Otherwise: set sr to HASH(0x01 || sr || c).
            sr = hash_children(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. After completing iterating through the consistency_path array as described
    #    above, verify that the fr calculated is equal to the first_hash supplied, that
    #    the sr calculated is equal to the second_hash value supplied, and that sn is 0.
    if sn != 0:
        raise ProofFailed("consistency path is too short")
    if fr != first_hash:
        raise ProofFailed(f"consistency path yields first root {fr.hex()}, expected {first_hash.hex()}")
    if sr != second_hash:
        raise ProofFailed(f"consistency path yields second root {sr.hex()}, expected {second_hash.hex()}")


# --- the section 2.1 definitions over leaf data (D[n]), as recursion on lists -----------------

def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]), RFC 9162 section 2.1.1."""
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + d[0])
    k = _largest_power_of_two_below(n)
    return _h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 9162 section 2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = _largest_power_of_two_below(n)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), RFC 9162 section 2.1.4.1, for 0 < m < n."""
    return subproof(m, d, True)


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]
