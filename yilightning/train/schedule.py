"""The report's three-stage learning-rate schedule: warm-up, then decay to half of the peak
(stage 1), a plateau at half of the peak (stage 2, where the data mixture shifts), and a fast
decay over the last ~12.5% of the steps (stage 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ScheduleConfig:
    peak_lr: float = 2e-3  # learning rate at the end of warm-up
    warmup_steps: int = 10  # linear warm-up from 0
    stage1_frac: float = 0.5  # stage 1 ends here (fraction of all steps): cosine decay to peak/2
    fast_decay_frac: float = 0.125  # the last fraction of steps: linear decay from peak/2 to final
    final_lr_frac: float = 0.02  # final learning rate as a fraction of the peak


def stage_bounds(total_steps: int, cfg: ScheduleConfig) -> tuple[int, int]:
    """(first step of stage 2, first step of the fast decay)."""
    s1_end = max(cfg.warmup_steps, int(total_steps * cfg.stage1_frac))
    return s1_end, max(s1_end, int(total_steps * (1 - cfg.fast_decay_frac)))


def stage2_progress(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """How far stage 2 has run at ``step``, in [0, 1] (drives the gradual mixture shift)."""
    s1_end, fd_start = stage_bounds(total_steps, cfg)
    return min(max((step - s1_end) / max(1, fd_start - s1_end), 0.0), 1.0)


def lr_at(step: int, total_steps: int, cfg: ScheduleConfig) -> tuple[float, str]:
    """(learning rate, stage name) at ``step`` of ``total_steps``."""
    peak, half = cfg.peak_lr, cfg.peak_lr / 2
    s1_end, fd_start = stage_bounds(total_steps, cfg)
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps, "warmup"
    if step < s1_end:
        t = (step - cfg.warmup_steps) / max(1, s1_end - cfg.warmup_steps)
        return half + (peak - half) * 0.5 * (1 + math.cos(math.pi * t)), "stage1"
    if step < fd_start:
        return half, "stage2"
    t = (step - fd_start) / max(1, total_steps - 1 - fd_start)
    return half + (cfg.final_lr_frac * peak - half) * min(t, 1.0), "fast_decay"


@dataclass
class DynamicBatchConfig:
    enabled: bool = False  # grow the batch in stage 2 when the loss stops improving (the report's mid-training)
    max_accum: int = 4  # gradient-accumulation steps never grow past this
    window: int = 20  # optimizer steps per loss window
    min_improvement: float = 0.01  # relative drop of the window-mean loss below which the batch doubles


class BatchSizeController:
    """Doubles gradient accumulation (the effective batch) during stage 2 each time the mean loss
    of a window of steps improved by less than ``min_improvement`` over the previous window.
    Its state goes into checkpoints, so a resumed run makes the same decisions."""

    def __init__(self, cfg: DynamicBatchConfig, accum: int) -> None:
        if cfg.enabled and (cfg.window < 1 or cfg.max_accum < accum):
            raise ValueError(f"dynamic_batch: window must be >= 1 and max_accum >= grad_accum ({accum}), "
                             f"got window={cfg.window}, max_accum={cfg.max_accum}")
        self.cfg, self.accum = cfg, accum
        self.losses: list[float] = []
        self.previous: float | None = None

    def update(self, loss: float, stage: str) -> int:
        """Feeds one step's loss; returns the accumulation for the next step."""
        if not self.cfg.enabled or stage != "stage2":
            return self.accum
        self.losses.append(loss)
        if len(self.losses) == self.cfg.window:
            mean = sum(self.losses) / len(self.losses)
            self.losses = []
            if self.previous is not None and (self.previous - mean) / abs(self.previous) < self.cfg.min_improvement:
                self.accum = min(self.accum * 2, self.cfg.max_accum)
            self.previous = mean
        return self.accum

    def state_dict(self) -> dict:
        return {"accum": self.accum, "losses": list(self.losses), "previous": self.previous}

    def load_state_dict(self, state: dict) -> None:
        self.accum, self.losses, self.previous = state["accum"], list(state["losses"]), state["previous"]
