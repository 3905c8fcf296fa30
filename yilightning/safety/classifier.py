"""A fast multi-label n-gram classifier over the 14 risk categories (fastText-style).

Features are hashed character n-grams (n = 2..5 by default), words, word pairs and one feature per
category lexicon, all of the normalised text, so the same model reads English and Chinese. A
text's logits are a bias plus the mean of the feature weights of its most unsafe window (an
"unsafe" head picks the window, 14 category heads describe it), so one harmful sentence in a long
benign document is not averaged away. Inference is a few NumPy gathers: about half a millisecond
per 1,000 characters on one core.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yilightning.safety.lexicon import lexicon_matches
from yilightning.safety.taxonomy import CATEGORY_NAMES
from yilightning.safety.text import normalize

_P = np.uint64(0x100000001B3)  # FNV prime: the rolling hash multiplier
_MIX = np.uint64(0x9E3779B97F4A7C15)
_VERSION = 1


@dataclass
class ClassifierConfig:
    buckets: int = 1 << 18  # hash buckets (rows of the weight table)
    min_n: int = 2  # character n-grams of length min_n..max_n
    max_n: int = 5
    dropout: float = 0.0  # share of an example's features dropped at random in each training step
    window: int = 64  # characters per scoring window (a text's score is its most unsafe window)
    stride: int = 16  # step between windows
    epochs: int = 12
    lr: float = 0.8
    batch_size: int = 64
    seed: int = 0
    target_fpr: float = 0.003  # calibration: the "unsafe" threshold lets through this share of held-back benign texts


_WORD = re.compile(r"\w+")


def features(text: str, min_n: int, max_n: int, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature ids of a normalised text and the character position of each (so windows can be
    scored): hashed character n-grams (min_n..max_n, with one space of padding on each side),
    hashed words and word bigrams, and one reserved id per category-lexicon hit (the last
    ``len(CATEGORY_NAMES)`` rows of the table)."""
    table = buckets - len(CATEGORY_NAMES)
    cp = np.frombuffer((" " + text + " ").encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    ids, starts = [], []
    h = np.zeros(len(cp), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for n in range(1, max_n + 1):
            if len(cp) < n:
                break
            h = h[: len(cp) - n + 1] * _P + cp[n - 1:]
            if n < min_n:
                continue
            mixed = (h + np.uint64(n)) * _MIX
            mixed ^= mixed >> np.uint64(29)
            ids.append((mixed % np.uint64(table)).astype(np.int64))
            starts.append(np.arange(len(cp) - n + 1))
    words = [(m.group(0), m.start()) for m in _WORD.finditer(text)]
    word_ids = [zlib.crc32(w.encode()) % table for w, _ in words]
    word_ids += [zlib.crc32(f"{a} {b}".encode()) % table for (a, _), (b, _) in zip(words, words[1:])]
    word_pos = [p for _, p in words] + [p for _, p in words[1:]]
    lex = lexicon_matches(text)
    lex_ids, lex_pos = [table + j for j, _ in lex], [p for _, p in lex]
    ids.append(np.array(word_ids + lex_ids, dtype=np.int64))
    starts.append(np.array(word_pos + lex_pos, dtype=np.int64) + 1)
    return np.concatenate(ids), np.concatenate(starts)


def windows(length: int, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end positions of the scoring windows over ``length`` characters (one window
    when the text is shorter than ``window``)."""
    if length <= window:
        return np.array([0]), np.array([length])
    lo = np.minimum(np.arange(0, length - window + stride, stride), length - window)
    return lo, lo + window


class NgramClassifier:
    """Multi-label risk classifier: :meth:`scores` gives a probability per category."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, config: ClassifierConfig,
                 categories: tuple[str, ...] = CATEGORY_NAMES, threshold: float = 0.5) -> None:
        outputs = len(categories) + 1  # column 0: "unsafe" (any category), then one per category
        if weight.shape != (config.buckets, outputs) or bias.shape != (outputs,):
            raise ValueError(f"weight must be [buckets={config.buckets}, {outputs}] and bias "
                             f"[{outputs}], got {weight.shape} and {bias.shape}")
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.config = config
        self.categories = categories
        self.threshold = float(threshold)  # calibrated "unsafe" threshold (see ClassifierConfig.target_fpr)

    def logits(self, text: str, *, normalized: bool = False) -> np.ndarray:
        """Logits of ``text``: "unsafe" first, then one per category. A text is as unsafe as its
        most unsafe window; the category logits are those of that window. Only the "unsafe"
        column is pooled over every window, which keeps long texts cheap."""
        cfg = self.config
        t = text if normalized else normalize(text)
        ids, starts = features(t, cfg.min_n, cfg.max_n, cfg.buckets)
        length = len(t) + 2
        if length > cfg.window:
            order = np.argsort(starts, kind="stable")
            ids, starts = ids[order], starts[order]
            csum = np.zeros(len(ids) + 1, dtype=np.float32)
            np.cumsum(self.weight[ids, 0], out=csum[1:])
            lo, hi = windows(length, cfg.window, cfg.stride)
            a, b = np.searchsorted(starts, lo), np.searchsorted(starts, hi)
            k = int(np.argmax((csum[b] - csum[a]) / np.maximum(b - a, 1)))
            ids = ids[a[k]:b[k]]
        return self.bias + self.weight[ids].mean(axis=0)

    def scores(self, text: str, *, normalized: bool = False) -> dict[str, float]:
        """Probability that ``text`` is unsafe (key ``"unsafe"``) and of each risk category."""
        p = 1.0 / (1.0 + np.exp(-self.logits(text, normalized=normalized)))
        return dict(zip(("unsafe",) + self.categories, p.tolist()))

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Writes a safetensors file atomically (a temporary file, then a rename)."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": str(_VERSION), "config": json.dumps(self.config.__dict__),
                "categories": json.dumps(list(self.categories)), "threshold": str(self.threshold)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"weight": self.weight.astype(np.float16), "bias": self.bias}, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | Path) -> "NgramClassifier":
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("version") != str(_VERSION):
                raise ValueError(f"{path}: classifier format version {meta.get('version')!r}, expected {_VERSION}; "
                                 "retrain with `yilightning safety-train`")
            weight, bias = f.get_tensor("weight").astype(np.float32), f.get_tensor("bias")
        return cls(weight, bias, ClassifierConfig(**json.loads(meta["config"])), tuple(json.loads(meta["categories"])),
                   float(meta["threshold"]))


def _document_chunks(split: str, window: int, seed: int) -> list[str]:
    """Benign text from the embedded corpus: standard-library docstrings (split by index) and
    synthetic arithmetic, cut to scoring-window size."""
    from yilightning.data.corpus import math_documents, stdlib_documents
    from yilightning.safety.corpus import held_out

    rng = random.Random(seed)
    chunks = []
    for i, doc in enumerate(stdlib_documents(max_docs=2400)):
        if held_out(i) != (split == "eval"):
            continue
        for _ in range(2):
            start = rng.randrange(max(1, len(doc.text) - window))
            chunks.append(doc.text[start:start + window])
    chunks += [d.text for d in math_documents(100 if split == "eval" else 300, seed=seed + (split == "eval"))]
    return chunks


def labelled_corpus(split: str = "train", seed: int = 0, window: int = 256) -> tuple[list[str], np.ndarray]:
    """Texts and a [N, 14] 0/1 label matrix: the generated safety corpus plus benign document
    chunks, for the ``train`` or held-out ``eval`` split."""
    from yilightning.safety.corpus import training_examples

    examples = training_examples(seed, split)
    texts = [e.text for e in examples] + _document_chunks(split, window, seed)
    labels = np.zeros((len(texts), len(CATEGORY_NAMES)), dtype=np.float32)
    index = {c: i for i, c in enumerate(CATEGORY_NAMES)}
    for row, e in enumerate(examples):
        for c in e.labels:
            labels[row, index[c]] = 1.0
    return texts, labels


def train_classifier(config: ClassifierConfig | None = None, *, progress: bool = False) -> NgramClassifier:
    """Trains the classifier on the ``train`` split of the generated corpus (deterministic for a
    seed; about ten seconds on one core)."""
    import torch

    cfg = config or ClassifierConfig()
    texts, labels = labelled_corpus("train", cfg.seed)
    calib = [i for i in range(len(texts)) if _held_back(i)]
    calib_set = set(calib)
    bags: list[list[torch.Tensor]] = []  # per example: the feature ids of each of its windows
    for t in texts:
        t = normalize(t)
        ids, starts = features(t, cfg.min_n, cfg.max_n, cfg.buckets)
        lo, hi = windows(len(t) + 2, cfg.window, cfg.stride)
        bags.append([torch.from_numpy(ids[(starts >= a) & (starts < b)]) for a, b in zip(lo, hi)])
    gen = torch.Generator().manual_seed(cfg.seed)
    emb = torch.nn.EmbeddingBag(cfg.buckets, 1 + len(CATEGORY_NAMES), mode="mean", sparse=True)
    torch.nn.init.zeros_(emb.weight)
    bias = torch.nn.Parameter(torch.full((1 + len(CATEGORY_NAMES),), -3.0))
    opt_w = torch.optim.SparseAdam([emb.weight], lr=cfg.lr / 4)
    opt_b = torch.optim.Adam([bias], lr=cfg.lr / 20)
    y = torch.from_numpy(np.concatenate([labels.max(axis=1, keepdims=True), labels], axis=1))
    # balance the classes of every output: positives and negatives carry the same total weight
    pos = y.sum(0).clamp(min=1.0)
    pos_weight = (len(y) - pos) / pos
    steps = range(cfg.epochs)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="safety classifier", unit="epoch")
    for _ in steps:
        order = [i for i in torch.randperm(len(texts), generator=gen).tolist() if i not in calib_set]
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            wins = [w for i in idx for w in bags[i]]
            owner = torch.tensor([j for j, i in enumerate(idx) for _ in bags[i]])
            if cfg.dropout:
                wins = [w[torch.rand(len(w), generator=gen) >= cfg.dropout] if len(w) > 4 else w for w in wins]
            offsets = torch.tensor([0] + [len(w) for w in wins[:-1]]).cumsum(0)
            per_window = emb(torch.cat(wins), offsets)
            # multiple-instance learning: a text is as unsafe as its most unsafe window
            pooled = torch.full((len(idx), per_window.shape[1]), -1e4).scatter_reduce(
                0, owner[:, None].expand_as(per_window), per_window, "amax", include_self=False)
            logits = pooled + bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], pos_weight=pos_weight)
            opt_w.zero_grad()
            opt_b.zero_grad()
            loss.backward()
            opt_w.step()
            opt_b.step()
    clf = NgramClassifier(emb.weight.detach().numpy(), bias.detach().numpy(), cfg)
    benign = [texts[i] for i in calib if labels[i].max() == 0]
    unsafe = np.array([clf.scores(t)["unsafe"] for t in benign])
    clf.threshold = float(np.clip(np.quantile(unsafe, 1.0 - cfg.target_fpr), 0.05, 0.95))
    return clf


def _held_back(i: int) -> bool:
    """Training-split examples never trained on: they calibrate the threshold and measure i.i.d. quality."""
    return zlib.crc32(i.to_bytes(4, "little")) % 10 == 0  # pseudo-random: examples come in harmful/benign pairs


def evaluate_classifier(clf: NgramClassifier, split: str = "iid", threshold: float = 0.5,
                        seed: int = 0) -> dict[str, dict[str, float]]:
    """Per-category precision, recall, F1 and support. ``split="iid"``: the tenth of the training
    corpus held back from training (same acts and templates, unseen sentences);
    ``split="acts"``: the held-out split (acts, templates and documents never seen)."""
    if split == "iid":
        texts, labels = labelled_corpus("train", seed)
        keep = [i for i in range(len(texts)) if _held_back(i)]
        texts, labels = [texts[i] for i in keep], labels[keep]
    elif split == "acts":
        texts, labels = labelled_corpus("eval", seed)
    else:
        raise ValueError(f"split must be 'iid' or 'acts', got {split!r}")
    pred = np.array([[s >= threshold for s in list(clf.scores(t).values())[1:]] for t in texts], dtype=bool)
    truth = labels.astype(bool)
    out = {}
    for j, c in enumerate(clf.categories):
        tp = int((pred[:, j] & truth[:, j]).sum())
        fp = int((pred[:, j] & ~truth[:, j]).sum())
        fn = int((~pred[:, j] & truth[:, j]).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[c] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": int(truth[:, j].sum())}
    return out


def default_path() -> Path:
    """Where the default classifier is cached: ``$YL_CACHE_DIR`` or ``~/.cache/yilightning``, under
    a name that changes with the code it is trained from (this module, the corpus generator, the
    lexicon, the text normalisation, the taxonomy), so an edit to any of them retrains it instead of
    loading a stale copy."""
    from yilightning.safety import corpus, lexicon, taxonomy, text

    root = os.environ.get("YL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "yilightning")
    source = b"".join(Path(m.__file__).read_bytes() for m in (corpus, lexicon, taxonomy, text))
    source += Path(__file__).read_bytes()
    return Path(root) / "safety" / f"classifier-v{_VERSION}-{hashlib.sha256(source).hexdigest()[:12]}.safetensors"


def default_classifier(path: str | Path | None = None) -> NgramClassifier:
    """The cached default classifier, trained (and cached atomically) on first use."""
    path = Path(path) if path is not None else default_path()
    if path.exists():
        return NgramClassifier.load(path)
    import sys

    print(f"RAISE: training the risk classifier (first use, about a minute; cached at {path})", file=sys.stderr)
    clf = train_classifier(progress=True)
    clf.save(path)
    return clf
