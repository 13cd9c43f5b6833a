"""RFC 9162 Merkle trees: the published Certificate Transparency vectors, and an oracle written from the
RFC's recursive definitions (tests/rfc9162.py, not the module's iterative code) for every size and index up
to 40."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rfc9162 import oracle_leaf, oracle_mth, oracle_path, oracle_subproof

from mustcheck.merkle import (
    SHA256,
    Frontier,
    Subtree,
    consistency_proof,
    inclusion_proof,
    subtrees_of,
    verify_consistency,
    verify_inclusion,
)

# The leaves and roots of the Certificate Transparency reference tests (RFC 6962 hashing, which RFC 9162
# keeps): roots of the first n leaves, n = 0..8.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {  # (leaf index, tree size): audit path
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_CONSISTENCY = {  # (old size, new size): proof
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


# --- the oracle (tests/rfc9162.py) takes leaf hashes; these tests' leaves are data -------------------------
def hashed(leaves: list[bytes]) -> list[bytes]:
    return [oracle_leaf(leaf) for leaf in leaves]


def leaves_of(count: int) -> list[bytes]:
    return [f"record {i}".encode() for i in range(count)]


def subtree_over(leaves: list[bytes]) -> Subtree:
    return subtrees_of(SHA256, [SHA256.leaf(leaf) for leaf in leaves])


# --- the published vectors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_roots_match_the_reference_vectors(size: int) -> None:
    frontier = Frontier(SHA256)
    for leaf in CT_LEAVES[:size]:
        frontier.append(SHA256.leaf(leaf))
    assert frontier.root().hex() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_inclusion_proofs_match_the_reference_vectors(index: int, size: int) -> None:
    proof = inclusion_proof(index, size, subtree_over(CT_LEAVES))
    assert [p.hex() for p in proof] == CT_INCLUSION[index, size]
    leaf = SHA256.leaf(CT_LEAVES[index])
    assert verify_inclusion(SHA256, index, size, leaf, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_consistency_proofs_match_the_reference_vectors(old: int, new: int) -> None:
    proof = consistency_proof(old, new, subtree_over(CT_LEAVES))
    assert [p.hex() for p in proof] == CT_CONSISTENCY[old, new]
    roots = [bytes.fromhex(r) for r in CT_ROOTS]
    assert verify_consistency(SHA256, old, new, roots[old], roots[new], proof)


# --- every small tree, against the oracle ------------------------------------------------------------------
@pytest.mark.parametrize("size", range(1, 41))
def test_every_proof_of_a_small_tree_agrees_with_the_rfc_definitions(size: int) -> None:
    leaves = leaves_of(size)
    subtree = subtree_over(leaves)
    root = oracle_mth(hashed(leaves))
    assert subtree(0, size) == root
    for index in range(size):
        proof = inclusion_proof(index, size, subtree)
        assert proof == oracle_path(index, hashed(leaves))
        assert verify_inclusion(SHA256, index, size, oracle_leaf(leaves[index]), proof, root)
    for old in range(1, size + 1):
        proof = consistency_proof(old, size, subtree)
        assert proof == oracle_subproof(old, hashed(leaves), True)
        assert verify_consistency(SHA256, old, size, oracle_mth(hashed(leaves[:old])), root, proof)


def test_the_empty_tree_is_a_prefix_of_every_tree() -> None:
    root = oracle_mth(hashed(leaves_of(5)))
    assert verify_consistency(SHA256, 0, 5, SHA256.empty_root(), root, [])
    assert not verify_consistency(SHA256, 0, 5, b"\x00" * 32, root, [])


def test_sizes_outside_the_tree_are_refused() -> None:
    subtree = subtree_over(leaves_of(4))
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(4, 4, subtree)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(5, 4, subtree)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(0, 4, subtree)


# --- anything altered fails --------------------------------------------------------------------------------
@given(size=st.integers(2, 64), data=st.data())
def test_an_altered_inclusion_proof_fails(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size)
    subtree = subtree_over(leaves)
    index = data.draw(st.integers(0, size - 1))
    root = oracle_mth(hashed(leaves))
    leaf = oracle_leaf(leaves[index])
    proof = inclusion_proof(index, size, subtree)
    assert verify_inclusion(SHA256, index, size, leaf, proof, root)
    flipped = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    altered = [*proof]
    altered[flipped] = bytes([altered[flipped][0] ^ (1 << (bit % 8)), *altered[flipped][1:]])
    assert not verify_inclusion(SHA256, index, size, leaf, altered, root)
    assert not verify_inclusion(SHA256, index, size, leaf, proof[:-1], root)
    assert not verify_inclusion(SHA256, index, size, leaf, [*proof, proof[0]], root)
    assert not verify_inclusion(SHA256, index, size, oracle_leaf(b"forged"), proof, root)
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    assert not verify_inclusion(SHA256, other, size, leaf, proof, root)
    assert not verify_inclusion(SHA256, index, size, leaf, proof, oracle_mth(hashed(leaves[:-1])))
    assert not verify_inclusion(SHA256, size, size, leaf, proof, root)


@given(size=st.integers(2, 64), data=st.data())
def test_a_consistency_proof_fails_for_a_rewritten_or_cut_log(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size)
    old = data.draw(st.integers(1, size - 1))
    proof = consistency_proof(old, size, subtree_over(leaves))
    old_root, new_root = oracle_mth(hashed(leaves[:old])), oracle_mth(hashed(leaves))
    assert verify_consistency(SHA256, old, size, old_root, new_root, proof)
    # A record the old head covered, rewritten in the new log: no proof from the new log convinces.
    rewritten = [*leaves]
    rewritten[data.draw(st.integers(0, old - 1))] = b"rewritten"
    forged = consistency_proof(old, size, subtree_over(rewritten))
    assert not verify_consistency(SHA256, old, size, old_root, oracle_mth(hashed(rewritten)), forged)
    # Sizes in the wrong order, or a proof cut short or left out. (A size alone is bound by the signature
    # on the tree head that carries it, not by the proof: some shapes of different sizes share a proof.)
    assert not verify_consistency(SHA256, size, old, new_root, old_root, proof)
    assert not verify_consistency(SHA256, old, size, old_root, new_root, proof[:-1])
    assert not verify_consistency(SHA256, old, size, old_root, new_root, [])


def test_the_frontier_needs_logarithmic_state() -> None:
    frontier = Frontier(SHA256)
    leaves = leaves_of(1000)
    for leaf in leaves:
        frontier.append(SHA256.leaf(leaf))
    assert frontier.root() == oracle_mth(hashed(leaves))
    assert len(frontier.nodes) == bin(1000).count("1")
