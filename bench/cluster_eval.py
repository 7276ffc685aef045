"""How well `webops cluster` groups what users mean: adjusted Rand index per threshold on webops'
labelled set (prints figures, asserts nothing).

    python bench/cluster_eval.py

bench/data/cluster_eval.json holds 40 headlines in 5 topics (written for this benchmark) and the
seed's 9 titles in 2 topics. Each set is embedded once with the served model and cut at each
threshold; the presets in webops/cluster/__init__.py come from this table.
"""

from __future__ import annotations

import json
from pathlib import Path

from sklearn.metrics import adjusted_rand_score

from webops.cluster import PRESETS
from webops.cluster import model as models
from webops.cluster.clustering import cluster

THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]


def main() -> None:
    sets = json.loads((Path(__file__).parent / "data" / "cluster_eval.json").read_text())["sets"]
    model = models.load()
    print("threshold  " + "  ".join(f"{t:>10g}" for t in THRESHOLDS))
    for name, topics in sets.items():
        sentences = [s for group in topics.values() for s in group]
        truth = [topic for topic, group in topics.items() for _ in group]
        embeddings = model.encode(sentences, normalize_embeddings=True)
        cells = []
        for threshold in THRESHOLDS:
            clusters = cluster(sentences, embeddings, threshold)
            label = {s: i for i, c in enumerate(clusters) for s in c}
            ari = adjusted_rand_score(truth, [label[s] for s in sentences])
            cells.append(f"{ari:5.2f} ({len(clusters):2d})")
        print(f"{name:9s}  " + "  ".join(f"{c:>10s}" for c in cells))
    print("adjusted Rand index (clusters); presets: " + ", ".join(f"{k} {v}" for k, v in PRESETS.items()))


if __name__ == "__main__":
    main()
