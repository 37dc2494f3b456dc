"""RFC 9162 (RFC 6962) Merkle tree: hashing, an append-only tree, proof verification.

Pure code: bytes and ints in, bytes out or a typed error. The hashing is the RFC 6962
SHA-256 hasher (transparency-dev/merkle ``rfc6962``); the verifiers follow the RFC 9162
section 2.1.3.2 and 2.1.4.2 algorithms, so proofs interoperate with CT / Trillian / Tessera.
"""
from __future__ import annotations

from hashlib import sha256

from ledgerstream.core.errors import ProofError, RootMismatch

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()
"""MTH({}) (RFC 9162 section 2.1.1): the root of the empty tree."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data); the 0x00 prefix keeps leaves apart from interior nodes."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right); the 0x01 prefix is the interior-node domain."""
    return sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """Append-only Merkle tree over leaf hashes, answering roots and proofs at any past size.

    ``_levels[k]`` concatenates the hashes of every complete 2**k-leaf subtree in order,
    so a subtree that is complete at some size is stored once and never recomputed. An
    append costs O(1) amortised hashes; roots and proofs at any size cost O(log n) hashes.
    Flat bytearrays instead of lists of bytes keep 1M leaves at about 64 MB.
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Add a leaf hash (callers hash entries with :func:`leaf_hash`); return its index."""
        if not isinstance(leaf_hash, (bytes, bytearray)) or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf_hash must be {HASH_SIZE} bytes")
        index = self._size
        levels = self._levels
        levels[0] += leaf_hash
        self._size = count = index + 1
        level = 0
        # Each even count at a level means the last two nodes there just completed a parent.
        while not count & 1:
            pair = levels[level][-2 * HASH_SIZE:]
            level += 1
            if level == len(levels):
                levels.append(self._new_level(level))
            levels[level] += sha256(b"\x01" + pair).digest()
            count >>= 1
        return index

    def _new_level(self, level: int) -> bytearray:
        """Storage for a new level (subclasses may keep it elsewhere, e.g. in a file)."""
        return bytearray()

    def leaf(self, index: int) -> bytes:
        """The leaf hash stored at ``index``."""
        self._check_index(index, self._size)
        return self._node(0, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all), i.e. the root at any past size."""
        size = self._check_size(size)
        return self._range_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 section 2.1.3.1, leaf side first."""
        size = self._check_size(size)
        self._check_index(index, size)
        return self._inclusion(index, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) of RFC 9162 section 2.1.4.1; empty if size1 is 0 or size2."""
        size2 = self._check_size(size2)
        if not isinstance(size1, int) or not 0 <= size1 <= size2:
            raise ValueError(f"size1 must be an int in [0, {size2}], got {size1!r}")
        if size1 in (0, size2):
            return []
        # The proof is the inclusion path of leaf size1-1, minus the hashes inside the
        # largest complete subtree ending at size1, which is sent instead (as its root)
        # unless that subtree is the whole old tree, whose root the verifier already has.
        shift = _trailing_zeros(size1)
        proof = self._inclusion(size1 - 1, size2)[shift:]
        if size1 != 1 << shift:
            proof.insert(0, self._node(shift, (size1 - 1) >> shift))
        return proof

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not isinstance(size, int) or not 0 <= size <= self._size:
            raise ValueError(f"size must be an int in [0, {self._size}], got {size!r}")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not isinstance(index, int) or not 0 <= index < size:
            raise ValueError(f"index must be an int in [0, {size}), got {index!r}")

    def _node(self, level: int, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self._levels[level][start:start + HASH_SIZE])

    def _range_hash(self, begin: int, end: int) -> bytes:
        """MTH(D[begin:end]) for a non-empty range whose ``begin`` is a multiple of the
        smallest power of two >= end - begin (true for every subtree RFC 9162 splits off),
        so the range is a run of stored complete subtrees, largest first."""
        nodes = []
        position = begin
        for level in reversed(range((end - begin).bit_length())):
            if (end - begin) >> level & 1:
                nodes.append(self._node(level, position >> level))
                position += 1 << level
        result = nodes.pop()
        while nodes:
            result = node_hash(nodes.pop(), result)
        return result

    def _inclusion(self, index: int, size: int) -> list[bytes]:
        proof = []
        # Below the level where the paths to ``index`` and ``size - 1`` meet, siblings are
        # complete subtrees, except the one on the right border, which may be partial.
        inner = (index ^ (size - 1)).bit_length()
        for level in range(inner):
            sibling = (index >> level) ^ 1
            start = sibling << level
            if start + (1 << level) <= size:
                proof.append(self._node(level, sibling))
            else:
                proof.append(self._range_hash(start, size))
        # Above it the path follows the right border: only left siblings, all complete.
        position = index >> inner
        level = inner
        while position:
            if position & 1:
                proof.append(self._node(level, position - 1))
            position >>= 1
            level += 1
        return proof


class CompactRange:
    """The Merkle state a log writer needs: the roots of the perfect subtrees that make up
    the tree, O(log n) hashes (transparency-dev/merkle ``compact.Range`` from index 0; RFC
    9162 section 2.1.1's decomposition of ``size`` into powers of two, largest first).

    It answers the current root only, not past roots or proofs (those come from the read
    side), and it is what a snapshot stores: ``CompactRange(size, hashes)`` restores it.
    """

    def __init__(self, size: int = 0, hashes: list[bytes] | tuple[bytes, ...] = ()) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"size must be a non-negative int, got {size!r}")
        hashes = list(hashes)
        if len(hashes) != size.bit_count():
            raise ValueError(f"a range of {size} leaves has {size.bit_count()} subtree hashes, not {len(hashes)}")
        if not all(isinstance(h, (bytes, bytearray)) and len(h) == HASH_SIZE for h in hashes):
            raise ValueError(f"subtree hashes must be {HASH_SIZE} bytes")
        self._size = size
        self._hashes = [bytes(h) for h in hashes]

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect subtrees' roots, left to right (one per set bit of ``size``, largest first)."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> int:
        """Add a leaf hash; return its index. Merges the subtrees the new leaf completes."""
        if not isinstance(leaf_hash, (bytes, bytearray)) or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf_hash must be {HASH_SIZE} bytes")
        index = self._size
        node = bytes(leaf_hash)
        carry = index
        while carry & 1:  # each trailing 1 bit is a subtree of the new leaf's size on the left
            node = node_hash(self._hashes.pop(), node)
            carry >>= 1
        self._hashes.append(node)
        self._size = index + 1
        return index

    def root(self) -> bytes:
        """MTH of all leaves: the subtree roots folded from the right (RFC 9162 2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        node = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            node = node_hash(left, node)
        return node


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """The root that ``proof`` yields for ``leaf_hash`` at ``index`` (RFC 9162 section 2.1.3.2).

    Shapes are checked before any hashing. Because the proof length is checked exactly
    first, the RFC's in-loop "sn is 0" failure and its final "sn equals 0" test cannot
    trigger and are left out; the loop is otherwise the RFC's, step for step, for review.
    """
    _check_count(index, "index")
    _check_count(size, "size")
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}", index=index, size=size)
    _check_hash(leaf_hash, "leaf_hash")
    _check_proof(proof, _inclusion_proof_length(index, size), f"inclusion of leaf {index} in size {size}")
    fn, sn, result = index, size - 1, leaf_hash
    for sibling in proof:
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """Raise unless ``proof`` shows ``leaf_hash`` at ``index`` in the tree of ``size`` with ``root``."""
    _check_hash(root, "root")
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise RootMismatch(
            f"inclusion proof for leaf {index} in tree size {size} does not reproduce the root",
            expected=root, computed=computed, index=index, size=size,
        )


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]) -> None:
    """Raise unless ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2).

    RFC 9162 section 2.1.4.2. Equal sizes need an empty proof and equal roots; size1 == 0
    needs an empty proof and ``root1 == EMPTY_ROOT`` (the empty tree is a prefix of any).
    """
    _check_count(size1, "size1")
    _check_count(size2, "size2")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}", size1=size1, size2=size2)
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    where = f"consistency from size {size1} to size {size2}"
    if size1 == 0 or size1 == size2:
        _check_proof(proof, 0, where)
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise RootMismatch("root1 of a size-0 tree must be the empty root", expected=EMPTY_ROOT, computed=root1)
        if size1 == size2 and root1 != root2:
            raise RootMismatch(f"{where}: equal sizes with different roots", expected=root2, computed=root1)
        return
    _check_proof(proof, _consistency_proof_length(size1, size2), where)
    # As in root_from_inclusion_proof, the exact length check replaces the RFC's sn tests.
    path = proof if size1 & (size1 - 1) else [root1, *proof]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for node in path[1:]:
        if fn & 1 or fn == sn:
            first = node_hash(node, first)
            second = node_hash(node, second)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, node)
        fn >>= 1
        sn >>= 1
    if first != root1:
        raise RootMismatch(f"{where}: proof does not reproduce root1", expected=root1, computed=first)
    if second != root2:
        raise RootMismatch(f"{where}: proof does not reproduce root2", expected=root2, computed=second)


def _trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1


def _inclusion_proof_length(index: int, size: int) -> int:
    """Hashes below the meeting point with the path to ``size - 1``, plus left border siblings."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_length(size1: int, size2: int) -> int:
    """For 0 < size1 < size2: the inclusion path of ``size1 - 1`` without the part inside the
    largest complete subtree ending at size1, plus that subtree's root unless it is root1."""
    shift = _trailing_zeros(size1)
    length = _inclusion_proof_length(size1 - 1, size2) - shift
    return length if size1 == 1 << shift else length + 1


def _check_count(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{name} must be a non-negative int, got {value!r}")


def _check_hash(value: bytes, name: str) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_SIZE:
        raise ProofError(f"{name} must be {HASH_SIZE} bytes, got {_describe(value)}")


def _check_proof(proof: list[bytes], want: int, where: str) -> None:
    if len(proof) != want:
        raise ProofError(f"{where}: proof has {len(proof)} hashes, expected {want}", got=len(proof), want=want)
    for position, node in enumerate(proof):
        _check_hash(node, f"proof[{position}]")


def _describe(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    return type(value).__name__
