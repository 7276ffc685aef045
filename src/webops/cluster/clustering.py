"""Sentences -> clusters of similar meaning. Pure: embeddings in, lists of sentences out.

Agglomerative clustering (average linkage) of L2-normalized embeddings, cut at a cosine distance
`threshold`: two groups merge while their average distance is below it. Measured on the seed's
nine titles with all-MiniLM-L6-v2: thresholds 0.3 to 0.8 give exactly its two clusters; 0.2
splits them further. Lower = stricter (more, smaller clusters).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.5


def cluster(
    sentences: Sequence[str], embeddings: np.ndarray | None, threshold: float = DEFAULT_THRESHOLD
) -> list[list[str]]:
    """Every sentence in exactly one cluster; input order inside a cluster; largest clusters first
    (ties: the cluster whose first sentence came first)."""
    if len(sentences) == 0:
        return []
    if len(sentences) == 1:
        return [[sentences[0]]]
    from sklearn.cluster import AgglomerativeClustering

    labels = (
        AgglomerativeClustering(
            n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average"
        )
        .fit(embeddings)
        .labels_
    )
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    ordered = sorted(groups.values(), key=lambda idx: (-len(idx), idx[0]))
    return [[sentences[i] for i in idx] for idx in ordered]
