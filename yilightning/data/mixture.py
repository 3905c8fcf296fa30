"""A mixture of packed sources sampled by weight, with weights that follow the schedule's
stages: stage 1 trains on a diverse mixture, stage 2 shifts it gradually toward the stage-3
weights (up-sampling high-quality data), the fast decay uses the stage-3 weights.

Each micro-batch comes from one source, chosen by a generator seeded with the micro-batch's
global index, so the sequence of batches does not depend on where a run was resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from yilightning.data.packing import PackedDataset

STAGES = ("warmup", "stage1", "stage2", "fast_decay")


def mixture_weights(weights: dict[str, dict[str, float]], stage: str, progress: float = 0.0) -> dict[str, float]:
    """Normalised source weights at ``stage``; ``progress`` in [0, 1] is how far stage 2 has run.
    Per source: ``stage1`` (also used in warm-up), ``fast_decay``, and optionally ``stage2``
    (without it stage 2 moves linearly from the stage-1 to the fast-decay weight)."""
    out = {}
    for name, w in weights.items():
        s1, s3 = w.get("stage1", 1.0), w.get("fast_decay", w.get("stage1", 1.0))
        if stage in ("warmup", "stage1"):
            out[name] = w.get(stage, s1)
        elif stage == "stage2":
            out[name] = w["stage2"] if "stage2" in w else s1 + (s3 - s1) * min(max(progress, 0.0), 1.0)
        elif stage == "fast_decay":
            out[name] = s3
        else:
            raise ValueError(f"mixture_weights: unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    total = sum(out.values())
    if total <= 0:
        raise ValueError(f"mixture weights at {stage} sum to {total}; give at least one source a positive weight")
    return {k: v / total for k, v in out.items()}


class MixtureDataset:
    """Several :class:`PackedDataset` s (one per sub-folder of a data folder) sampled by weight."""

    def __init__(self, directory: str | Path, seq_len: int, weights: dict[str, dict[str, float]], seed: int = 0,
                 block_len: int | None = None):
        d = Path(directory)
        names = sorted(p.name for p in d.iterdir() if (p / "tokens.u32").exists()) if d.is_dir() else []
        if not names:
            raise FileNotFoundError(f"MixtureDataset: no source folders with tokens.u32 in {d}")
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"mixture: no source {sorted(unknown)} in {d}; sources there: {', '.join(names)}")
        self.weights = {n: weights.get(n, {"stage1": 0.0, "fast_decay": 0.0}) for n in names}
        self.sources = {n: PackedDataset(d / n, seq_len, seed=seed, block_len=block_len) for n in names}
        self.seed = seed

    def batches(self, batch_size: int, state: dict | None,
                stage_at: Callable[[int], tuple[str, float]]) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict]]:
        """Micro-batches from ``state`` (``{"batch": global index, "pos": {source: piece}}``,
        ``None`` to start); ``stage_at(global index)`` gives (stage, stage-2 progress)."""
        state = state or {"batch": 0, "pos": {n: 0 for n in self.sources}}
        g, pos = state["batch"], dict(state["pos"])
        names = list(self.sources)
        while True:
            w = mixture_weights(self.weights, *stage_at(g))
            pick = names[int(np.random.default_rng([self.seed, g]).choice(len(names), p=[w[n] for n in names]))]
            ids, cu, pos[pick] = next(self.sources[pick].batches(batch_size, start=pos[pick]))
            g += 1
            yield ids, cu, {"batch": g, "pos": dict(pos), "source": pick}
