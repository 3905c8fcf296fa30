"""Semantic document organisation (the report's pre-training data processing): similar documents
are clustered and each cluster's documents are written next to each other, so the fixed-length
training pieces cut from the token stream hold related documents (their boundaries are kept:
training stays block-causal)."""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np

from yilightning.data.corpus import Document

_WORDS = re.compile(r"\w+")


def embed(texts: list[str], dim: int = 1024) -> np.ndarray:
    """Hashed bag-of-words vectors (log term frequency, L2-normalised), ``[len(texts), dim]``."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        ids = np.fromiter((zlib.crc32(w.encode()) % dim for w in _WORDS.findall(t.lower())), dtype=np.int64)
        if ids.size:
            out[i] = np.log1p(np.bincount(ids, minlength=dim))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def kmeans(x: np.ndarray, k: int, iters: int = 15, seed: int = 0, restarts: int = 4) -> np.ndarray:
    """Spherical k-means (cosine similarity) on unit rows with k-means++ seeding; the best of
    ``restarts`` runs (highest total similarity to the centres). Returns a cluster id per row."""
    if not 1 <= k <= len(x):
        raise ValueError(f"kmeans: k must lie in [1, {len(x)}], got {k}")
    rng = np.random.default_rng(seed)
    best, best_score = None, -np.inf
    for _ in range(restarts):
        labels, score = _kmeans_once(x, k, iters, rng)
        if score > best_score:
            best, best_score = labels, score
    return best


def _kmeans_once(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    chosen = [int(rng.integers(len(x)))]  # k-means++ seeding: far-apart starting centres
    dist = 1.0 - x @ x[chosen[0]]
    for _ in range(k - 1):
        p = np.clip(dist, 0, None) ** 2
        nxt = int(rng.choice(len(x), p=p / p.sum())) if p.sum() > 0 else int(rng.integers(len(x)))
        chosen.append(nxt)
        dist = np.minimum(dist, 1.0 - x @ x[nxt])
    centers = x[chosen].copy()
    labels = np.full(len(x), -1, dtype=np.int64)
    for _ in range(iters):
        sims = x @ centers.T
        new = np.argmax(sims, axis=1)
        if (new == labels).all():
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            if len(members):
                v = members.sum(axis=0)
                centers[c] = v / max(np.linalg.norm(v), 1e-12)
    return labels, float((x @ centers.T)[np.arange(len(x)), labels].sum())


@dataclass
class Organisation:
    docs: list[Document]  # in cluster order
    clusters: int
    largest: int  # documents in the largest cluster

    def summary(self) -> str:
        return (f"semantic organisation: {len(self.docs)} documents in {self.clusters} clusters "
                f"(largest {self.largest}), each cluster written contiguously")


def organize(docs: list[Document], clusters: int | None = None, seed: int = 0) -> Organisation:
    """Orders ``docs`` cluster by cluster (clusters by first appearance, documents in their
    original order inside a cluster). ``clusters`` defaults to about sqrt(n / 2)."""
    if not docs:
        return Organisation([], 0, 0)
    k = clusters or max(1, round(math.sqrt(len(docs) / 2)))
    k = min(k, len(docs))
    labels = kmeans(embed([d.text for d in docs]), k, seed=seed)
    order = {c: i for i, c in enumerate(dict.fromkeys(labels.tolist()))}
    ranked = sorted(range(len(docs)), key=lambda i: (order[labels[i]], i))
    return Organisation([docs[i] for i in ranked], len(order), int(np.bincount(labels).max()))
