"""`webops cluster`: a text-clustering HTTP API, served by gunicorn with one preloaded model.

Needs the extra: `pip install webops[cluster]` (FastAPI, gunicorn, sentence-transformers, torch).
"""

# The seed's example: nine titles, two topics. The API's docs show it; the tests and the benchmark send it.
EXAMPLE = [
    "Dog Walking: 10 Simple Steps",
    "The Secrets of Dog Walking",
    "Why You Need To Dog Walking",
    "The Art of Dog Walking",
    "The Joy of Dog Walking",
    "Public Speaking For The Modern Age",
    "Learn The Art of Public Speaking",
    "Master The Art of Public Speaking",
    "The Best Way To Public Speaking",
]

# What users mean by "similar": cosine distance thresholds, complete linkage (clustering.py), chosen by
# the mean adjusted Rand index on held-out labelled sets (bench/cluster_eval.py). A number of clusters,
# `k`, is the other way to ask (clustering.cluster).
PRESETS = {"topic": 0.85, "paraphrase": 0.4}
DEFAULT_MODE = "topic"
