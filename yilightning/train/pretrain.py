"""Pre-training loop: AdamW with gradient accumulation and clipping, the three-stage schedule,
the MoE aux losses, metrics.jsonl and a progress bar, asynchronous atomic checkpoints, and
exact resume (model, optimizer, data position and RNG state)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from yilightning.data import PackedDataset
from yilightning.data.packing import length_weighted_batches
from yilightning.data.mixture import MixtureDataset, mixture_weights
from yilightning.layers import MoE
from yilightning.model import YiLightningConfig, YiLightningForCausalLM
from yilightning.ops import update_expert_bias
from yilightning.train.checkpoint import CheckpointWriter, checkpoint_steps, load_latest
from yilightning.train.schedule import (BatchSizeController, DynamicBatchConfig, ScheduleConfig, lr_at,
                                       stage2_progress, stage_bounds)


@dataclass
class LongContextConfig:
    """The report's long-context extension, run after the fast decay."""

    steps: int = 0  # optimizer steps of the extension (0: none)
    seq_len: int = 1024  # tokens per packed sequence in the extension
    batch_size: int = 2  # sequences per step
    rope_theta: float = 0.0  # RoPE base from the extension on (0: 8x the model's)
    lr: float = 1e-4  # constant learning rate of the extension
    length_bins: dict[float, float] = field(default_factory=lambda: {0.0: 1.0, 0.5: 3.0, 1.0: 6.0})  # doc length
    # (fraction of seq_len) -> sampling weight: long documents are up-sampled
    source: str = ""  # with a data mixture: the one source to read (default: all of them)


@dataclass
class PretrainConfig:
    preset: str = "tiny"  # model preset
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's fields
    seq_len: int = 256  # tokens per packed sequence
    batch_size: int = 8  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 240  # optimizer steps (about 4 minutes for the tiny preset on 2 cores)
    grad_clip: float = 1.0  # max global gradient norm
    # forward precision: "auto" (bf16 autocast on a GPU, fp32 on the CPU), "fp32", or "bf16"
    # (autocast; on a CPU with AVX512-BF16 the tiny preset trains 1.3x faster than in fp32)
    precision: str = "auto"
    # with the model's expert_bias: the step of the aux-loss-free bias update after every
    # optimizer step (DeepSeek-V3's gamma; under-loaded experts up, over-loaded down)
    expert_bias_rate: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    seed: int = 0
    log_every: int = 10  # steps between metrics.jsonl lines (losses are means over the window)
    checkpoint_every: int = 60  # steps between checkpoints (and one at the end)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # per data source (a sub-folder of the data folder), its weight per stage: {"stage1": w,
    # "fast_decay": w} (stage 2 shifts gradually between them unless "stage2" is given); empty:
    # one source, no mixture
    mixture: dict[str, dict[str, float]] = field(default_factory=dict)
    dynamic_batch: DynamicBatchConfig = field(default_factory=DynamicBatchConfig)
    # context growth: stage 1 trains on sequences of this length (0: seq_len throughout), stage 2
    # doubles it at even intervals up to seq_len; tokens per step stay the same (batch shrinks)
    start_seq_len: int = 0
    long_context: LongContextConfig = field(default_factory=LongContextConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PretrainConfig":
        """A recipe file, or the name of a recipe shipped in the package (``tiny``)."""
        path = recipe_path(path)
        raw = yaml.safe_load(path.read_text()) or {}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        sched = ScheduleConfig(**raw.pop("schedule", {}))
        dyn = DynamicBatchConfig(**raw.pop("dynamic_batch", {}))
        long = LongContextConfig(**raw.pop("long_context", {}))
        if "betas" in raw:
            raw["betas"] = tuple(raw["betas"])
        return cls(**raw, schedule=sched, dynamic_batch=dyn, long_context=long)

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        for name in ("seq_len", "batch_size", "grad_accum", "max_steps", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        unknown = set(self.model) - {f.name for f in dataclasses.fields(YiLightningConfig)}
        if unknown:  # YiLightningConfig itself keeps unknown keys (transformers' configs do)
            raise ValueError(f"model: unknown fields {sorted(unknown)}; the fields are YiLightningConfig's "
                             "(`yilightning info` shows a preset's)")

    def autocast(self, device: torch.device) -> bool:
        """Whether the forward runs under bf16 autocast on ``device``."""
        return self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda")


def recipe_path(name_or_path: str | Path) -> Path:
    """``name_or_path`` if it is a file, else the packaged recipe of that name
    (``yilightning/configs/pretrain/<name>.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = Path(__file__).resolve().parent.parent / "configs" / "pretrain" / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    shipped = sorted(p.stem for p in packaged.parent.glob("*.yaml"))
    raise FileNotFoundError(f"no recipe file {name_or_path}; give a YAML path or one of the shipped recipes: "
                            f"{', '.join(shipped)}")


def build_model(cfg: PretrainConfig, vocab_size: int) -> YiLightningForCausalLM:
    torch.manual_seed(cfg.seed)
    config = YiLightningConfig.preset(cfg.preset, **{"vocab_size": vocab_size, **cfg.model})
    return YiLightningForCausalLM(config)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops the rows logged after ``step`` (a run killed after its last checkpoint logged them;
    the resumed run logs those steps again). Rewritten atomically."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for line in rows:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            break  # a line cut short by the kill: everything from here on is dropped
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def pretrain(cfg: PretrainConfig, data_dir: str | Path, out_dir: str | Path, vocab_size: int, *,
             resume: bool = False, max_steps: int | None = None, progress: bool = True) -> YiLightningForCausalLM:
    """Train from the packed token files in ``data_dir``; write metrics and checkpoints to
    ``out_dir``. ``max_steps`` stops early (the schedule still spans ``cfg.max_steps``).
    Raises FileExistsError for a fresh run (``resume=False``) into a folder that holds an earlier
    run's checkpoints, FileNotFoundError for ``resume=True`` without any."""
    out = Path(out_dir)
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"pretrain: max_steps must be >= 1 (or None for the whole schedule), got {max_steps}")
    earlier = [] if resume else checkpoint_steps(out / "checkpoints")
    if earlier:  # a fresh run beside them would log over the old metrics and leave the old run's
        # later checkpoints to a later --resume
        raise FileExistsError(f"pretrain: {out} holds checkpoints of an earlier run (up to step {earlier[-1]}); "
                              "pass --resume to continue it, or another --out (or delete that folder) to start afresh")
    rank, world, owns_group = _init_distributed()
    main = rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "pretrain_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    device = _device()
    model = build_model(cfg, vocab_size).to(device).train()  # seeded: every rank starts from the same weights
    core = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.index is not None
                                                          else None)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    # fused: one kernel over all parameters (tiny preset on 2 CPU cores: 16 ms a step instead of 61)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.schedule.peak_lr, betas=cfg.betas,
                            fused=device.type in ("cpu", "cuda"))
    moes = [m for m in core.modules() if isinstance(m, MoE)]  # in layer order, like tokens_per_expert
    step, data_pos, tokens, long_pos = 0, (None if cfg.mixture else 0), 0, 0
    batch_size = BatchSizeController(cfg.dynamic_batch, cfg.grad_accum)
    writer = CheckpointWriter(out / "checkpoints")
    if resume:
        state = load_latest(out / "checkpoints")
        if state is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {out / 'checkpoints'}")
        core.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, data_pos, tokens = state["step"], state["data_pos"], state["tokens"]
        long_pos = state.get("long_pos", 0)
        if "batch_size" in state:  # checkpoints from before dynamic batch sizes lack it
            batch_size.load_state_dict(state["batch_size"])
        torch.set_rng_state(state["rng"])
        if main:
            _truncate_metrics(out / "metrics.jsonl", step)
    total = cfg.max_steps + cfg.long_context.steps
    stop = min(total, max_steps) if max_steps is not None else total
    in_long = False
    metrics = open(out / "metrics.jsonl", "a" if resume else "w") if main else None
    def stage_at(batch: int) -> tuple[str, float]:  # batches are drawn lazily, during the current step
        return lr_at(step, cfg.max_steps, cfg.schedule)[1], stage2_progress(step, cfg.max_steps, cfg.schedule)

    def open_data(seq_len: int, pos):  # one shuffled stream of cfg.seq_len blocks at every context length
        if cfg.mixture:
            return MixtureDataset(data_dir, seq_len, cfg.mixture, seed=cfg.seed, block_len=cfg.seq_len).batches(
                cfg.batch_size * cfg.seq_len // seq_len, pos, stage_at)
        return PackedDataset(data_dir, seq_len, seed=cfg.seed, block_len=cfg.seq_len).batches(
            cfg.batch_size * cfg.seq_len // seq_len, start=pos)

    seq_len = seq_len_at(max(step - 1, 0), cfg)  # the length the saved data position counts in
    batches = open_data(seq_len, data_pos)
    bar = tqdm(total=stop, initial=step, disable=not progress or not main, desc="pretrain", unit="step")
    t0 = time.perf_counter()
    window: list[tuple[float, float]] = []  # (lm, aux) of the steps since the last log line
    load: list[torch.Tensor] | None = None  # tokens routed to each expert, per MoE layer, since the last log line
    try:
        while step < stop:
            if step < cfg.max_steps and seq_len_at(step, cfg) != seq_len:  # context growth
                data_pos = _rescale(data_pos, seq_len, seq_len_at(step, cfg))
                seq_len = seq_len_at(step, cfg)
                batches = open_data(seq_len, data_pos)
            if step >= cfg.max_steps and not in_long:
                batches = _enter_long_context(core, cfg, Path(data_dir), long_pos)
                in_long = True
            lr, stage = (cfg.long_context.lr, "long_context") if in_long else lr_at(step, cfg.max_steps, cfg.schedule)
            for group in opt.param_groups:
                group["lr"] = lr
            lm, aux = 0.0, 0.0
            step_load: list[torch.Tensor] | None = None  # tokens per expert in this step, per MoE layer
            accum = 1 if in_long else batch_size.accum
            for micro in range(accum):
                for r in range(world):  # micro-batches go to the ranks in turn: the global order never changes
                    batch = next(batches)
                    if r == rank:
                        ids, cu = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
                if in_long:
                    long_pos = batch[2]
                else:
                    data_pos = batch[2]
                sync = micro == accum - 1 or world == 1
                with model.no_sync() if not sync else contextlib.nullcontext(), \
                        torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.autocast(device)):
                    out_ = model(ids, labels=ids, cu_seqlens=cu)
                    (out_.loss / accum).backward()
                counts = [c.detach().float() for c in out_.tokens_per_expert]
                load = counts if load is None else [a + b for a, b in zip(load, counts)]
                step_load = counts if step_load is None else [a + b for a, b in zip(step_load, counts)]
                lm += out_.lm_loss.item() / accum
                aux += out_.aux_loss.item() / accum if out_.aux_loss is not None else 0.0
                tokens += ids.numel() * world
            if world > 1:  # log the mean over ranks
                both = torch.tensor([lm, aux], dtype=torch.float64, device=device)  # NCCL needs device tensors
                torch.distributed.all_reduce(both)
                lm, aux = (both / world).tolist()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip).item()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _update_expert_biases(moes, step_load, cfg.expert_bias_rate, world)
            step += 1
            if not math.isfinite(lm):
                raise FloatingPointError(f"pretrain: the loss became {lm} at step {step}; lower the learning rate")
            rate = tokens / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{lm:.3f}", lr=f"{lr:.2e}", stage=stage, tok_s=f"{rate:.0f}")
            bar.update(1)
            window.append((lm, aux))
            batch_size.update(lm + aux, stage)  # every rank sees the same (all-reduced) loss
            if main and (step % cfg.log_every == 0 or step == stop):
                lm_mean = sum(w[0] for w in window) / len(window)
                aux_mean = sum(w[1] for w in window) / len(window)
                window.clear()
                expert_load = [[round(x, 4) for x in (c / c.sum().clamp(min=1)).tolist()] for c in load or []]
                load = None
                metrics.write(json.dumps({"step": step, "loss": lm_mean + aux_mean, "lm_loss": lm_mean,
                                          "aux_loss": aux_mean, "lr": lr, "stage": stage, "tokens": tokens,
                                          "grad_norm": norm, "tokens_per_s": rate,
                                          "expert_load": expert_load, "grad_accum": accum,
                                          "seq_len": cfg.long_context.seq_len if in_long else seq_len,
                                          **({"mixture": {k: round(v, 4) for k, v in mixture_weights(
                                              cfg.mixture, stage, stage2_progress(step - 1, cfg.max_steps,
                                                                                  cfg.schedule)).items()}}
                                             if cfg.mixture and not in_long else {})}) + "\n")
                metrics.flush()
            if main and (step % cfg.checkpoint_every == 0 or step == stop):
                writer.save(step, {"model": core.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                   "data_pos": data_pos, "long_pos": long_pos, "tokens": tokens,
                                   "batch_size": batch_size.state_dict(),
                                   "rng": torch.get_rng_state()})
    except BaseException:
        with contextlib.suppress(RuntimeError):  # the training error is the one to report
            writer.wait()
        raise
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
        writer.wait()
        if owns_group:
            torch.distributed.destroy_process_group()
    return core.eval()


def _update_expert_biases(moes: list[MoE], step_load: list[torch.Tensor] | None, rate: float, world: int) -> None:
    """Aux-loss-free balancing: each MoE layer's selection bias moves by ``rate`` towards an even
    load, from the tokens routed in this step (summed over the ranks, so every rank agrees)."""
    if not step_load or not rate or all(m.expert_bias is None for m in moes):
        return
    loads = torch.stack(step_load)  # (MoE layers, E)
    if world > 1:
        torch.distributed.all_reduce(loads)
    with torch.no_grad():
        for moe, load in zip(moes, loads):
            if moe.expert_bias is not None:
                moe.expert_bias.copy_(update_expert_bias(moe.expert_bias, load, rate))


def seq_len_at(step: int, cfg: PretrainConfig) -> int:
    """Training sequence length at ``step`` under context growth (``cfg.start_seq_len``)."""
    if not cfg.start_seq_len or cfg.start_seq_len >= cfg.seq_len:
        return cfg.seq_len
    if cfg.seq_len % cfg.start_seq_len or (cfg.seq_len // cfg.start_seq_len) & (cfg.seq_len // cfg.start_seq_len - 1):
        raise ValueError(f"start_seq_len ({cfg.start_seq_len}) must be seq_len ({cfg.seq_len}) divided by a power of 2")
    doublings = (cfg.seq_len // cfg.start_seq_len).bit_length() - 1
    s1_end, fd_start = stage_bounds(cfg.max_steps, cfg.schedule)
    if step < s1_end:
        return cfg.start_seq_len
    if step >= fd_start:
        return cfg.seq_len
    done = int((step - s1_end) / max(1, fd_start - s1_end) * (doublings + 1))
    return cfg.start_seq_len << min(done, doublings)


def _rescale(pos, old: int, new: int):
    """A data position counted in pieces of ``old`` tokens, in pieces of ``new`` tokens."""
    if pos is None:
        return None
    if isinstance(pos, dict):  # a mixture: every source's position
        return {**pos, "pos": {k: v * old // new for k, v in pos["pos"].items()}}
    return pos * old // new


def _enter_long_context(model: YiLightningForCausalLM, cfg: PretrainConfig, data_dir: Path, start: int):
    """Raises the RoPE base of every attention layer (and the config, so it is saved) and
    returns the length-binned batches of the extension."""
    lc = cfg.long_context
    theta = lc.rope_theta or 8.0 * model.config.rope_theta
    for module in model.modules():
        if hasattr(module, "rope_base"):
            module.rope_base = theta
    model.config.rope_theta = theta
    if not cfg.mixture:
        dirs = [data_dir]
    elif lc.source:
        dirs = [data_dir / lc.source]
    else:  # every source of the mixture
        dirs = sorted(p for p in data_dir.iterdir() if (p / "tokens.u32").exists())
    datasets = [PackedDataset(d, lc.seq_len, seed=cfg.seed) for d in dirs]
    return length_weighted_batches(datasets, lc.batch_size, lc.length_bins, start=start, seed=cfg.seed)


def _device() -> torch.device:
    """This process's GPU (``LOCAL_RANK`` under torchrun) when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
    return device


def _init_distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the process group). Under ``torchrun``
    (WORLD_SIZE > 1) the group is created with NCCL on GPUs and gloo on CPUs."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, False
    if not dist.is_available():
        raise RuntimeError("pretrain: WORLD_SIZE > 1 but this torch build has no torch.distributed")
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), True
