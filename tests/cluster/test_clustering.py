"""The clustering rules, on hand-made embeddings (no model needed)."""

from __future__ import annotations

import importlib.util

import numpy as np

from tests.conftest import need

need(importlib.util.find_spec("sklearn") is not None, "the cluster extra (pip install webops[cluster])")

from webops.cluster.clustering import cluster  # noqa: E402 - after the check: it needs scikit-learn


def unit(*v: float) -> list[float]:
    a = np.array(v, dtype=float)
    return list(a / np.linalg.norm(a))


def test_every_sentence_once_input_order_inside_largest_first() -> None:
    sentences = ["b1", "a1", "b2", "a2", "b3", "c1"]
    emb = np.array(
        [unit(0, 1, 0), unit(1, 0, 0), unit(0, 1, 0.05), unit(1, 0.05, 0), unit(0.02, 1, 0), unit(0, 0, 1)]
    )
    assert cluster(sentences, emb, 0.5) == [["b1", "b2", "b3"], ["a1", "a2"], ["c1"]]


def test_ties_go_to_the_cluster_seen_first() -> None:
    emb = np.array([unit(1, 0), unit(0, 1), unit(1, 0.01), unit(0.01, 1)])
    assert cluster(["x1", "y1", "x2", "y2"], emb, 0.5) == [["x1", "x2"], ["y1", "y2"]]


def test_zero_and_one_sentence() -> None:
    assert cluster([], np.zeros((0, 3))) == []
    assert cluster(["alone"], np.array([unit(1, 2, 3)])) == [["alone"]]


def test_the_threshold_decides_how_strict() -> None:
    emb = np.array([unit(1, 0), unit(1, 0.6)])  # cosine distance ~0.14
    assert len(cluster(["a", "b"], emb, 0.3)) == 1
    assert len(cluster(["a", "b"], emb, 0.1)) == 2
