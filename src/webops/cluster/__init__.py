"""`webops cluster`: a text-clustering HTTP API, served by gunicorn with one preloaded model.

Needs the extra: `pip install webops[cluster]` (FastAPI, gunicorn, sentence-transformers, torch).
"""
