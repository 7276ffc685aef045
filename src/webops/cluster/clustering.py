"""Sentences -> clusters of similar meaning. Pure: embeddings in, lists of sentences out.

Agglomerative clustering (average linkage) of L2-normalized embeddings, cut at a cosine distance
`threshold`: two groups merge while their average distance is below it. Lower = stricter (more,
smaller clusters). What users mean comes as two presets, measured with all-MiniLM-L6-v2 on
webops' labelled set (bench/cluster_eval.py, bench/data/cluster_eval.json: 40 headlines in 5
topics, and the seed's 9 titles in 2):

- `topic` (0.85, the default): the best adjusted Rand index on the headlines (0.75; 0.66 at 0.8,
  0.63 at 0.9) while the seed's titles stay exactly its two clusters (they merge from 0.9 on);
- `paraphrase` (0.4): only near-rewordings group; the 40 headlines stay 40 singletons.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import DEFAULT_MODE, PRESETS

DEFAULT_THRESHOLD = PRESETS[DEFAULT_MODE]


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
