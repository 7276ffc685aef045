"""Sentences -> clusters of similar meaning. Pure: embeddings in, lists of sentences out.

Agglomerative clustering of L2-normalized embeddings, either cut at a cosine distance
`threshold` or into `k` clusters:

- by threshold (the default): complete linkage, so no two sentences in a cluster are further apart
  than `threshold` (0: identical, 1: unrelated, 2: opposite; lower = stricter: more, smaller
  clusters). The presets in __init__.py: `topic` 0.85, `paraphrase` 0.4 (only near-rewordings
  group). Complete linkage at 0.85 was chosen over average linkage (the method before issue 31) and
  Ward by the mean adjusted Rand index on labelled sets that were not used to tune it, at their
  full size and at 3 sentences per topic (bench/cluster_eval.py, the sets in bench/data/): 0.46 and
  0.38, where average linkage at 0.85 had 0.33 and 0.27. A fixed Ward cut scores higher on 40-60
  sentences but merges everything in small requests (its merge cost grows with cluster size).
- with `k`: Ward linkage (the best with the true count: 0.53 and 0.42), exactly min(k, n)
  clusters; the threshold is not used.

What no threshold fixes: how coarse a "topic" is depends on the input (the best threshold differs
from set to set), so one that suits one set splits or merges another; when the caller knows how
many groups they want, `k` is the better question.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import DEFAULT_MODE, PRESETS

DEFAULT_THRESHOLD = PRESETS[DEFAULT_MODE]
LINKAGE = "complete"  # with a threshold
K_LINKAGE = "ward"  # with k


def cluster(
    sentences: Sequence[str],
    embeddings: np.ndarray | None,
    threshold: float | None = None,
    k: int | None = None,
    *,
    linkage: str | None = None,
) -> list[list[str]]:
    """Every sentence in exactly one cluster; input order inside a cluster; largest clusters first
    (ties: the cluster whose first sentence came first).

    `threshold` (a cosine distance; None: the `topic` preset) or `k` (exactly min(k, n) clusters;
    `threshold` is then ignored). `linkage` overrides the method (the benchmark compares them)."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"k must be a positive integer, not {k!r}")
    n = len(sentences)
    if n == 0:
        return []
    if n == 1:
        return [[sentences[0]]]
    if k is not None and k >= n:
        return [[s] for s in sentences]
    labels = _labels(np.asarray(embeddings, dtype=float), threshold, k, linkage)
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    ordered = sorted(groups.values(), key=lambda idx: (-len(idx), idx[0]))
    return [[sentences[i] for i in idx] for idx in ordered]


def _labels(
    embeddings: np.ndarray, threshold: float | None, k: int | None, linkage: str | None
) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    method = linkage or (K_LINKAGE if k is not None else LINKAGE)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms == 0, 1, norms)
    # On unit vectors Euclidean distance is a function of cosine distance (d^2 = 2 cos_d): Ward needs
    # Euclidean, the others are given cosine so that a threshold reads as a cosine distance.
    metric = "euclidean" if method == "ward" else "cosine"
    if k is not None:
        model = AgglomerativeClustering(n_clusters=k, metric=metric, linkage=method)
    else:
        cut = DEFAULT_THRESHOLD if threshold is None else threshold
        model = AgglomerativeClustering(
            n_clusters=None, distance_threshold=cut, metric=metric, linkage=method
        )
    return np.asarray(model.fit(unit).labels_)
