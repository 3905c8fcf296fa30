"""Tokenised documents -> fixed-length training sequences that keep document boundaries.

Documents (each ending with EOS) are concatenated and cut into pieces of ``seq_len`` tokens;
every piece carries ``cu_seqlens``, the boundaries of the document fragments inside it, so
training uses block-causal attention (a fragment never attends to another document). The
tokens live in one flat memory-mapped file (``tokens.u32``) with document offsets beside it
(``docs.i64``): a corpus larger than memory works, and a position in it resumes exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch


def write_tokens(docs: Iterable[list[int]], directory: str | os.PathLike, eos_id: int) -> Path:
    """Write tokenised documents (EOS appended to each) as ``tokens.u32`` + ``docs.i64``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    offsets = [0]
    with open(d / "tokens.u32.tmp", "wb") as f:
        for ids in docs:
            arr = np.asarray([*ids, eos_id], dtype=np.uint32)
            f.write(arr.tobytes())
            offsets.append(offsets[-1] + arr.size)
    np.asarray(offsets, dtype=np.int64).tofile(d / "docs.i64.tmp")
    os.replace(d / "tokens.u32.tmp", d / "tokens.u32")  # the pair appears only when complete
    os.replace(d / "docs.i64.tmp", d / "docs.i64")
    return d


class PackedDataset:
    """Fixed-length pieces of a token file, in a seeded random order, resumable by index.

    The order shuffles blocks of ``block_len`` tokens (default: ``seq_len``) and reads each block
    as ``block_len // seq_len`` consecutive pieces. Opened at any ``seq_len`` dividing the same
    ``block_len``, the dataset is one token stream, so a run whose context grows continues at
    position ``i * old // new`` without re-reading or skipping data."""

    def __init__(self, directory: str | os.PathLike, seq_len: int, seed: int = 0, block_len: int | None = None) -> None:
        d = Path(directory)
        if not (d / "tokens.u32").exists():
            raise FileNotFoundError(f"PackedDataset: no tokens.u32 in {d}; write it with write_tokens()")
        block_len = block_len or seq_len
        if seq_len < 1 or block_len % seq_len:
            raise ValueError(f"PackedDataset: block_len ({block_len}) must be a positive multiple of seq_len "
                             f"({seq_len})")
        if (d / "tokens.u32").stat().st_size == 0:  # np.memmap cannot map an empty file
            raise ValueError(f"PackedDataset: {d}/tokens.u32 holds no tokens")
        self.tokens = np.memmap(d / "tokens.u32", dtype=np.uint32, mode="r")
        self.doc_starts = np.fromfile(d / "docs.i64", dtype=np.int64) if (d / "docs.i64").exists() else np.zeros(0)
        if len(self.doc_starts) == 0 or self.doc_starts[0] != 0 or self.doc_starts[-1] != len(self.tokens):
            raise ValueError(f"PackedDataset: {d}/docs.i64 does not describe {d}/tokens.u32 (a write interrupted "
                             "between the two files?); write the folder again with write_tokens()")
        self.seq_len, self.per_block = seq_len, block_len // seq_len
        blocks = len(self.tokens) // block_len
        self.num_pieces = blocks * self.per_block
        if self.num_pieces == 0:
            raise ValueError(f"PackedDataset: {len(self.tokens)} tokens do not fill one block of {block_len}")
        self.order = np.random.default_rng(seed).permutation(blocks)

    def piece(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [seq_len] int64, cu_seqlens int32) of the i-th piece in the shuffled order."""
        j = i % self.num_pieces
        return self._piece_at(int(self.order[j // self.per_block]) * self.per_block + j % self.per_block)

    def _piece_at(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The piece at position ``k`` of the token file."""
        start = k * self.seq_len
        end = start + self.seq_len
        ids = torch.from_numpy(self.tokens[start:end].astype(np.int64))
        lo, hi = np.searchsorted(self.doc_starts, start, "right"), np.searchsorted(self.doc_starts, end, "left")
        inner = self.doc_starts[lo:hi] - start  # documents starting strictly inside the piece
        cu = torch.tensor([0, *inner.tolist(), self.seq_len], dtype=torch.int32)
        return ids, cu

    def batches(self, batch_size: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Packed batches from piece ``start`` on: (ids [B*seq_len], cu_seqlens, next start)."""
        i = start
        while True:
            pieces = [self.piece(i + b) for b in range(batch_size)]
            ids = torch.cat([p[0] for p in pieces])
            cus = [pieces[0][1]] + [p[1][1:] + b * self.seq_len for b, p in enumerate(pieces) if b > 0]
            i += batch_size
            yield ids, torch.cat(cus), i


def length_weighted_batches(datasets: list[PackedDataset], batch_size: int, bins: dict[float, float],
                            start: int = 0, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Batches for long-context training over the pieces of one or more datasets (all with the
    same ``seq_len``), up-sampling pieces by the length of the document at their middle: ``bins``
    maps a length (as a fraction of ``seq_len``) to a weight, and a piece takes the weight of the
    largest bin its document reaches (``{0: 1, 0.5: 3, 1: 6}``: documents longer than a sequence
    are drawn six times as often as short ones). Batch ``g`` is drawn with a generator seeded by
    ``(seed, g)``, so ``start`` resumes exactly."""
    if not bins or any(w < 0 for w in bins.values()) or sum(bins.values()) <= 0:
        raise ValueError(f"length bins need non-negative weights with a positive sum, got {bins}")
    seq_len = datasets[0].seq_len
    weights, owner = [], []
    for j, data in enumerate(datasets):
        lengths = np.diff(data.doc_starts)
        mids = np.arange(data.num_pieces) * seq_len + seq_len // 2
        doc_len = lengths[np.clip(np.searchsorted(data.doc_starts, mids, side="right") - 1, 0, len(lengths) - 1)]
        w = np.zeros(data.num_pieces)
        for frac, b in sorted(bins.items()):
            w[doc_len >= float(frac) * seq_len] = b
        weights.append(w)
        owner += [(j, k) for k in range(data.num_pieces)]
    weight = np.concatenate(weights)
    if weight.sum() <= 0:
        raise ValueError(f"length bins {bins} give every piece weight 0; add a bin starting at 0")
    p = weight / weight.sum()
    g = start
    while True:
        picks = np.random.default_rng([seed, g]).choice(len(p), batch_size, p=p)
        pieces = [datasets[owner[i][0]]._piece_at(owner[i][1]) for i in picks]
        cus = [pieces[0][1]] + [q[1][1:] + b * seq_len for b, q in enumerate(pieces) if b > 0]
        g += 1
        yield torch.cat([q[0] for q in pieces]), torch.cat(cus), g
