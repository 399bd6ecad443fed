"""Dedup functions: shingles, MinHash, LSH parameters and the kept-copy order."""
from __future__ import annotations

import random

import pytest

from transforms.dedup import (bucket_candidates, band_keys, estimate_jaccard, lsh_params, minhash_signature,
                              resolve_root, shingles, sort_key)
from transforms.normalize import dedup_key
from tests.helpers import ARTICLE_EN


def jaccard(a, b):
    a, b = set(a), set(b)
    return len(a & b) / len(a | b)


def test_word_shingles_and_short_keys():
    assert shingles("a b c d e f") == ["a b c d e", "b c d e f"]
    assert shingles("a b c") == ["a b c"]


def test_character_shingles_for_unspaced_scripts():
    key = dedup_key("国务院总理李强今天在北京会见了越南国防部长，双方就军事合作交换了意见。" * 3)
    grams = shingles(key)
    assert all(len(g) == 5 and " " not in g for g in grams)


def test_signature_is_deterministic_and_pinned():
    sig = minhash_signature(shingles(dedup_key(ARTICLE_EN)))
    assert len(sig) == 128 * 4 and sig == minhash_signature(shingles(dedup_key(ARTICLE_EN)))
    assert sig[:8].hex() == minhash_signature(shingles(dedup_key(ARTICLE_EN)), seed=1)[:8].hex()
    assert sig != minhash_signature(shingles(dedup_key(ARTICLE_EN)), seed=2)


def test_estimate_tracks_true_jaccard():
    rng = random.Random(7)
    words = [f"w{rng.randrange(5000)}" for _ in range(600)]
    edited = list(words)
    for i in rng.sample(range(len(edited)), 12):
        edited[i] = "changed"
    a, b = shingles(" ".join(words)), shingles(" ".join(edited))
    true = jaccard(a, b)
    est = estimate_jaccard(minhash_signature(a), minhash_signature(b))
    assert abs(est - true) < 0.12


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_lsh_params_fit_the_threshold(threshold):
    bands, rows = lsh_params(threshold, 128)
    assert bands * rows <= 128
    # A pair at the threshold is a candidate with good probability; a pair far below rarely is.
    assert 1 - (1 - threshold ** rows) ** bands > 0.5
    assert 1 - (1 - (threshold / 3) ** rows) ** bands < 0.05


def test_band_keys_equal_for_equal_signatures():
    sig = minhash_signature(["a", "b"])
    assert band_keys(sig, 16, 8) == band_keys(bytes(sig), 16, 8)
    assert len(set(band_keys(sig, 16, 8))) == 16


def test_sort_key_prefers_earliest_then_smallest_id():
    dated = sort_key("2023-01-01T00:00:00+00:00", "b", "f:1")
    later = sort_key("2023-02-01T00:00:00+00:00", "a", "f:2")
    undated = sort_key(None, "0", "f:3")
    assert sorted([undated, later, dated]) == [dated, later, undated]


def test_bucket_candidates_pair_with_earlier_members_only():
    members = [(("2", "b", "l2"), "l2"), (("1", "a", "l1"), "l1"), (("3", "c", "l3"), "l3")]
    pairs = bucket_candidates(members)
    assert ("l2", (("1", "a", "l1"), "l1")) in pairs
    assert all(child != parent[1] for child, parent in pairs)
    assert not any(child == "l1" for child, _ in pairs)


def test_resolve_root_follows_chains():
    parents = {"c": (("2",), "b", 0.9), "b": (("1",), "a", 0.85)}
    assert resolve_root("c", parents) == (("1",), "a")
    assert resolve_root("a", parents) == (None, "a")
