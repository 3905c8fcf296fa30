"""The main job on the embedded default: build the corpus, train the tokenizer, pre-train the
``tiny`` preset through the schedule's stages, generate samples and write a report."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from yilightning.data import (Decontaminator, clean_corpus, embedded_corpus, organize, read_documents,
                              write_tokens)
from yilightning.tokenizer import MIN_VOCAB, Tokenizer, train_tokenizer
from yilightning.train import PretrainConfig, pretrain
from yilightning.train.checkpoint import checkpoint_steps
from yilightning.train.plots import plot_run

PROMPTS = ["Return the", "Question: what is 12 + 7? Answer:", "This module provides"]


def prepare_data(out_dir: Path, *, vocab_size: int = 4096, stdlib_docs: int | None = 4000,
                 math_docs: int = 4000, safety: bool = True, decontaminate: str | Path | None = None,
                 sources: list[str | Path] | None = None, by_source: bool = False) -> tuple[Tokenizer, Path]:
    """Embedded corpus (or the files and folders in ``sources``: text, JSONL, Parquet) -> cleaning (quality heuristics, exact and MinHash dedup, decontamination
    against the benchmark file ``decontaminate``, RAISE's safety filter; the counts go to
    ``out_dir/data/report.txt``) -> tokenizer (``out_dir/model``) -> packed tokens
    (``out_dir/data``, or one sub-folder per source with ``by_source``, for a data mixture: the
    embedded corpus has ``stdlib`` and ``math``; files are named by their stem); reuses what an
    earlier run left there."""
    model_dir, data_dir = out_dir / "model", out_dir / "data"
    done = data_dir / ("sources.json" if by_source else "tokens.u32")
    if (model_dir / "tokenizer.model").exists() and done.exists():
        return Tokenizer.load(model_dir), data_dir
    if sources:
        docs = read_documents(sources)
        lines = [f"corpus: {', '.join(map(str, sources))}"]
    else:
        docs = embedded_corpus(stdlib_docs, math_docs)
        lines = [f"corpus: {len(docs)} documents, {sum(len(d.text) for d in docs) / 1e6:.1f}M characters "
                 "(standard-library docstrings + synthetic arithmetic)"]
    hook = None
    if safety:
        from yilightning.safety import filter_corpus

        hook = filter_corpus
    cleaned = clean_corpus(docs, decontaminate=Decontaminator.from_file(decontaminate) if decontaminate else None,
                           hook=hook)
    docs = list(cleaned)
    lines += cleaned.report.lines()
    if not docs:
        raise ValueError("prepare_data: no document survived cleaning (" + "; ".join(cleaned.report.lines()) +
                         "); give more text")
    organised = organize(docs)
    docs = organised.docs
    lines.append(organised.summary())
    print("\n".join(lines))
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "report.txt").write_text("\n".join(lines) + "\n")
    texts = [d.text for d in docs]
    try:
        tok = train_tokenizer(texts, vocab_size=vocab_size)
    except ValueError as e:  # too little text for the vocabulary: say how much there was
        if vocab_size < MIN_VOCAB:
            raise
        raise ValueError(f"prepare_data: {len(texts)} documents, {sum(map(len, texts)):,} characters are too "
                         f"little text for a {vocab_size}-token vocabulary; give more text ({e})") from None
    tok.save(model_dir)
    if not by_source:
        write_tokens(tok.encode(texts), data_dir, tok.eos_id)
        return tok, data_dir
    groups: dict[str, list[str]] = {}
    for d in docs:
        groups.setdefault(source_name(d), []).append(d.text)
    for name, group in groups.items():
        write_tokens(tok.encode(group), data_dir / name, tok.eos_id)
    done.write_text(json.dumps({n: len(g) for n, g in groups.items()}))
    print("sources: " + ", ".join(f"{n} ({len(g)} documents)" for n, g in groups.items()))
    return tok, data_dir


def unigram_entropy(data_dir: Path) -> float:
    """Entropy (nats/token) of the token frequencies in ``data_dir`` (all sources): the loss of a
    model that ignores context, the baseline a trained model must be far below."""
    files = [data_dir / "tokens.u32"] if (data_dir / "tokens.u32").exists() else sorted(data_dir.glob("*/tokens.u32"))
    counts: dict[int, int] = {}
    for f in files:
        ids, n = np.unique(np.memmap(f, dtype=np.uint32, mode="r"), return_counts=True)
        for i, c in zip(ids.tolist(), n.tolist()):
            counts[i] = counts.get(i, 0) + c
    freq = np.array(list(counts.values()), dtype=np.float64)
    p = freq / freq.sum()
    return float(-(p * np.log(p)).sum())


def source_name(doc) -> str:
    """The mixture source of a document: ``stdlib`` / ``math`` for the embedded corpus, the
    file's stem for files read with ``read_documents``."""
    head = re.split(r"[:#]", doc.source, maxsplit=1)[0]
    return Path(head).name.split(".")[0] or "default"


def run_quickstart(out_dir: str | Path = "runs/quickstart", *, config: PretrainConfig | None = None,
                   vocab_size: int = 4096, stdlib_docs: int | None = 4000, math_docs: int = 4000,
                   decontaminate: str | Path | None = None, progress: bool = True) -> Path:
    """Runs the whole tiny pipeline (``config`` defaults to the shipped ``tiny`` recipe: every
    stage, mixture, context growth, dynamic batch, long-context extension); returns the path of
    ``report.md``. Each run starts afresh: an earlier quickstart's checkpoints in ``out_dir``
    go (a folder with another run's checkpoints is refused, as ``pretrain`` refuses it)."""
    out = Path(out_dir)
    marker = out / ".quickstart"  # this folder is a quickstart's: its checkpoints may be replaced
    if marker.exists():
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    cfg = config or PretrainConfig.from_yaml("tiny")
    tok, data_dir = prepare_data(out, vocab_size=vocab_size, stdlib_docs=stdlib_docs, math_docs=math_docs,
                                 decontaminate=decontaminate, by_source=bool(cfg.mixture))
    if not checkpoint_steps(out / "checkpoints"):
        marker.touch()
    model = pretrain(cfg, data_dir, out, tok.vocab_size, progress=progress)
    model.save_pretrained(out / "model")
    samples = []
    with torch.no_grad():
        for prompt, gen in zip(PROMPTS, model.generate([tok.encode(p) for p in PROMPTS], 32, repetition_penalty=1.2,
                                                       stop_token_ids=(tok.eos_id,))):
            samples.append((prompt, tok.decode([t for t in gen if t != tok.eos_id])))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    plots = plot_run(out)
    counts = model.parameter_counts()
    baseline = unigram_entropy(data_dir)
    report = [
        "# yilightning quickstart", "",
        f"- model: preset `{cfg.preset}`, {counts['total'] / 1e6:.1f}M parameters "
        f"({counts['active'] / 1e6:.1f}M active per token), vocabulary {tok.vocab_size}",
        f"- trained {rows[-1]['step']} steps, {rows[-1]['tokens']:,} tokens, "
        f"{rows[-1]['tokens_per_s']:.0f} tokens/s",
        f"- loss {rows[0]['loss']:.3f} at step {rows[0]['step']} -> {rows[-1]['loss']:.3f} at step {rows[-1]['step']}; "
        f"final LM loss {rows[-1]['lm_loss']:.3f} nats/token against {baseline:.3f} for the unigram distribution "
        f"of the same tokens ({baseline - rows[-1]['lm_loss']:.2f} below it)",
        "", "| step | stage | lr | loss |", "|---|---|---|---|",
        *[f"| {r['step']} | {r['stage']} | {r['lr']:.2e} | {r['loss']:.3f} |" for r in rows],
        "", *[f"![{p.stem}]({p.name})" for p in plots],
        "", "## Data", "", *[f"- {line}" for line in (out / "data" / "report.txt").read_text().splitlines()],
        "", "## Samples (greedy, repetition penalty 1.2)", "",
        *[f"- `{p}` -> `{s!r}`" for p, s in samples],
        "", f"Model and tokenizer: `{out / 'model'}`; metrics: `{out / 'metrics.jsonl'}`.",
    ]
    path = out / "report.md"
    path.write_text("\n".join(report) + "\n")
    return path
