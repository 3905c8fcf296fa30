"""PNG plots of a training run from its ``metrics.jsonl``: loss, learning rate (both coloured
by schedule stage) and the expert-load heat map (share of routed tokens per expert and MoE
layer over the last logged window)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_run(run_dir: str | Path) -> list[Path]:
    """Writes ``loss.png``, ``lr.png`` and (for MoE models) ``expert_load.png`` into ``run_dir``
    and returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    path = run / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"plot_run: no metrics.jsonl in {run}; train first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"plot_run: {path} is empty")
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    written = []
    for key, name, ylabel in (("loss", "loss.png", "loss (LM + aux)"), ("lr", "lr.png", "learning rate")):
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        for stage in stages:
            pts = [(r["step"], r[key]) for r in rows if r["stage"] == stage]
            ax.plot(*zip(*pts), marker="." if len(pts) < 50 else None, label=stage)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(title="stage", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run / name)
        plt.close(fig)
        written.append(run / name)
    load = rows[-1].get("expert_load") or []
    if load:
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(load)), dpi=100)
        im = ax.imshow(load, aspect="auto", cmap="viridis", vmin=0.0)
        ax.set_xlabel("expert")
        ax.set_ylabel("MoE layer")
        ax.set_title(f"share of routed tokens, steps up to {rows[-1]['step']}", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(run / "expert_load.png")
        plt.close(fig)
        written.append(run / "expert_load.png")
    return written
