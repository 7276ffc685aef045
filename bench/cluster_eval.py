"""How well `webops cluster` groups what users mean: adjusted Rand index (ARI) of each candidate
method on each labelled set (prints figures, asserts nothing).

    python bench/cluster_eval.py            # make bench-cluster-eval

The sets (bench/data/; each file says where its text comes from and under which licence):

- tuning: cluster_eval.json, webops' own 40 headlines in 5 topics and the seed's 9 titles in 2
  (the presets before issue 31 were tuned on these);
- held-out: cluster_chatterbot.json (chat prompts), cluster_emoji.json (emoji names),
  cluster_wordnet.json (dictionary definitions), made from public sources that packages ship
  (bench/data/build_cluster_sets.py);
- language: cluster_emoji_de.json, cluster_emoji_es.json, the emoji set named in German and
  Spanish; not in any mean (the model is English-only).

Columns: ARI (number of clusters) per set; "held-out" is the mean over the held-out sets at full
size, "3/topic" the mean over the held-out sets cut down to 3 sentences per topic (5 seeded draws
each: small requests), "all" the mean of those two (what the default is chosen by), "union" the
held-out sets in one request (174 sentences, 19 topics). Each set is embedded once.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from webops.cluster import PRESETS
from webops.cluster import model as models
from webops.cluster.clustering import K_LINKAGE, LINKAGE, cluster

DATA = Path(__file__).parent / "data"
TUNING = ["headlines", "seed"]
HELD_OUT = ["chatterbot", "emoji", "wordnet"]
LANGUAGE = ["emoji_de", "emoji_es"]
DRAWS = 5
PER_TOPIC = 3

# (label, linkage, threshold, use the true number of topics as k)
CANDIDATES: list[tuple[str, str, float | None, bool]] = [
    *[(f"average {t}", "average", t, False) for t in (0.7, 0.75, 0.8, 0.85, 0.875)],
    *[(f"complete {t}", "complete", t, False) for t in (0.8, 0.85, 0.875, 0.9, 0.95)],
    *[(f"ward {t} (not a cosine distance)", "ward", t, False) for t in (1.6, 1.8)],
    *[(f"{m}, k = true count", m, None, True) for m in ("average", "complete", "ward")],
]

Labelled = tuple[list[str], list[str]]  # sentences, their topics


def load_sets() -> dict[str, Labelled]:
    sets: dict[str, dict[str, list[str]]] = dict(json.loads((DATA / "cluster_eval.json").read_text())["sets"])
    for name in HELD_OUT + LANGUAGE:
        sets[name] = json.loads((DATA / f"cluster_{name}.json").read_text())["topics"]
    return {
        name: (
            [s for group in topics.values() for s in group],
            [t for t, group in topics.items() for _ in group],
        )
        for name, topics in sets.items()
    }


def ari(sentences: list[str], truth: list[str], clusters: list[list[str]]) -> float:
    label = {s: i for i, c in enumerate(clusters) for s in c}
    return float(adjusted_rand_score(truth, [label[s] for s in sentences]))


def small_draws(truth: list[str], seed: int) -> list[list[int]]:
    """DRAWS subsets of PER_TOPIC sentences per topic (indexes, in input order)."""
    rng = random.Random(seed)
    topics = list(dict.fromkeys(truth))
    draws = []
    for _ in range(DRAWS):
        idx = [i for t in topics for i in rng.sample([j for j, x in enumerate(truth) if x == t], PER_TOPIC)]
        draws.append(sorted(idx))
    return draws


def evaluate(
    sets: dict[str, Labelled],
    embeddings: dict[str, np.ndarray],
    run: Callable[[list[str], np.ndarray, int], list[list[str]]],
) -> dict[str, tuple[float, int]]:
    """ARI and number of clusters per column for one method."""
    out: dict[str, tuple[float, int]] = {}
    for name in TUNING + HELD_OUT + LANGUAGE + ["union"]:
        sentences, truth = sets[name]
        clusters = run(sentences, embeddings[name], len(set(truth)))
        out[name] = (ari(sentences, truth, clusters), len(clusters))
    small = []
    for seed, name in enumerate(HELD_OUT):
        sentences, truth = sets[name]
        for idx in small_draws(truth, seed):
            sub = [sentences[i] for i in idx]
            subtruth = [truth[i] for i in idx]
            small.append(ari(sub, subtruth, run(sub, embeddings[name][idx], len(set(subtruth)))))
    held = float(np.mean([out[n][0] for n in HELD_OUT]))
    out["held-out"] = (held, 0)
    out["3/topic"] = (float(np.mean(small)), 0)
    out["all"] = ((held + out["3/topic"][0]) / 2, 0)
    return out


def main() -> None:
    sets = load_sets()
    model = models.load()
    embeddings = {
        name: np.asarray(model.encode(s, normalize_embeddings=True))
        for name, (s, _) in sets.items()
        if name != "union"
    }
    sets["union"] = (
        [s for n in HELD_OUT for s in sets[n][0]],
        [f"{n}:{t}" for n in HELD_OUT for t in sets[n][1]],
    )
    embeddings["union"] = np.vstack([embeddings[n] for n in HELD_OUT])

    columns = TUNING + HELD_OUT + ["held-out", "3/topic", "all", "union"] + LANGUAGE
    counted = {"held-out", "3/topic", "all"}
    print("| method | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    default = f"{LINKAGE} {PRESETS['topic']}"
    best: dict[str, tuple[float, str]] = {}
    for label, linkage, threshold, with_k in CANDIDATES:

        def run(
            s: list[str],
            e: np.ndarray,
            true_k: int,
            linkage: str = linkage,
            threshold: float | None = threshold,
            with_k: bool = with_k,
        ) -> list[list[str]]:
            return cluster(s, e, threshold, k=true_k if with_k else None, linkage=linkage)

        row = evaluate(sets, embeddings, run)
        for name in HELD_OUT + TUNING:
            if not with_k and row[name][0] > best.get(name, (-1.0, ""))[0]:
                best[name] = (row[name][0], label)
        cells = [f"{row[c][0]:.2f}" if c in counted else f"{row[c][0]:.2f} ({row[c][1]})" for c in columns]
        mark = "**" if label == default else ""
        print(f"| {mark}{label}{mark} | " + " | ".join(cells) + " |")
    print(
        f"\ndefault: {default} (topic), k: {K_LINKAGE}; presets: "
        + ", ".join(f"{m} {t}" for m, t in PRESETS.items())
    )
    print(
        "best fixed threshold per set: " + ", ".join(f"{n} {a:.2f} ({lbl})" for n, (a, lbl) in best.items())
    )
    print("ARI (clusters); held-out, 3/topic, all: means (see the docstring)", file=sys.stderr)


if __name__ == "__main__":
    main()
