import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from yilightning.data import PackedDataset, embedded_corpus, math_documents, write_tokens
from yilightning.quickstart import run_quickstart
from yilightning.tokenizer import train_tokenizer
from yilightning.train import PretrainConfig, ScheduleConfig, load_latest, lr_at, pretrain
from yilightning.train.plots import plot_run

SMALL_MODEL = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_experts=4,
                   num_experts_per_tok=2, moe_intermediate_size=32, sliding_window=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    texts = [doc.text for doc in math_documents(400)]
    tok = train_tokenizer(texts, vocab_size=400)
    write_tokens(tok.encode(texts), d, tok.eos_id)
    return d, tok


def test_schedule_stages():
    cfg = ScheduleConfig(peak_lr=1.0, warmup_steps=10, stage1_frac=0.5, fast_decay_frac=0.125, final_lr_frac=0.0)
    lrs = [lr_at(s, 160, cfg) for s in range(160)]
    assert lrs[0] == (0.1, "warmup") and lrs[9][0] == pytest.approx(1.0)
    assert lrs[10][1] == "stage1" and lrs[79][0] == pytest.approx(0.5, abs=1e-3)
    assert {lr for lr, st in lrs if st == "stage2"} == {0.5}
    fast = [lr for lr, st in lrs if st == "fast_decay"]
    assert len(fast) == 20 and fast[0] == 0.5 and fast[-1] == pytest.approx(0.0)


def test_packed_dataset_of_no_tokens_says_so(tmp_path):
    write_tokens([], tmp_path, 3)  # found by fuzzing: "cannot mmap an empty file"
    with pytest.raises(ValueError, match="tokens.u32 holds no tokens"):
        PackedDataset(tmp_path, 8)


def test_packed_pieces_keep_document_boundaries(data):
    d, tok = data
    ds = PackedDataset(d, seq_len=64)
    ids, cu = ds.piece(0)
    assert ids.shape == (64,) and cu[0] == 0 and cu[-1] == 64 and bool((cu[1:] > cu[:-1]).all())
    eos_positions = (ids == tok.eos_id).nonzero().flatten() + 1  # a document ends after its EOS
    assert set(eos_positions.tolist()) - {64} <= set(cu.tolist())
    batch_ids, batch_cu, nxt = next(ds.batches(3))
    assert batch_ids.shape == (192,) and batch_cu[-1] == 192 and nxt == 3


def test_loss_decreases_and_resume_follows_the_same_trajectory(data, tmp_path):
    d, tok = data
    cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, max_steps=8, log_every=1, checkpoint_every=4,
                         schedule=ScheduleConfig(peak_lr=3e-3, warmup_steps=2))
    straight = pretrain(cfg, d, tmp_path / "a", tok.vocab_size, progress=False)
    pretrain(cfg, d, tmp_path / "b", tok.vocab_size, max_steps=4, progress=False)
    assert load_latest(tmp_path / "b" / "checkpoints")["step"] == 4
    resumed = pretrain(cfg, d, tmp_path / "b", tok.vocab_size, resume=True, progress=False)
    a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # same losses, step for step
    for (n, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), n
    assert a[-1]["lm_loss"] < a[0]["lm_loss"]
    assert {"step", "loss", "lr", "tokens", "stage", "expert_load"} <= set(a[0])
    load = a[-1]["expert_load"]  # per MoE layer, the share of routed tokens per expert
    assert len(load) == straight.config.num_hidden_layers and all(len(x) == 4 for x in load)
    assert all(abs(sum(x) - 1) < 1e-3 for x in load)
    paths = plot_run(tmp_path / "a")
    assert [p.name for p in paths] == ["loss.png", "lr.png", "expert_load.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        plot_run(tmp_path / "nowhere")


KILLED_RUN = """
import sys
from pathlib import Path
from tests.train.test_pretrain import SMALL_MODEL
from yilightning.train import PretrainConfig, ScheduleConfig, pretrain
cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, max_steps=30, log_every=1, checkpoint_every=3,
                     schedule=ScheduleConfig(peak_lr=3e-3, warmup_steps=2))
pretrain(cfg, Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), resume=len(sys.argv) > 4, progress=False)
"""


def test_sigkill_then_resume_follows_the_uninterrupted_run(data, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    d, tok = data
    root = Path(__file__).resolve().parents[2]
    args = [sys.executable, "-c", KILLED_RUN, str(d), str(tmp_path / "killed"), str(tok.vocab_size)]
    proc = subprocess.Popen(args, cwd=root)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        state = load_latest(tmp_path / "killed" / "checkpoints")
        if state is not None and state["step"] >= 9:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no flush: like a crashed node
    proc.wait()
    subprocess.run(args + ["--resume"], cwd=root, check=True, timeout=300)
    subprocess.run([sys.executable, "-c", KILLED_RUN, str(d), str(tmp_path / "straight"), str(tok.vocab_size)],
                   cwd=root, check=True, timeout=300)
    killed = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in killed] == list(range(1, 31))  # no step lost or logged twice
    assert [r["loss"] for r in killed] == [r["loss"] for r in straight]


def test_bf16_autocast_training_on_the_cpu(data, tmp_path):
    """precision: bf16 runs the forward under autocast on any device (the GPU default's path)."""
    d, tok = data
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, max_steps=8, log_every=1, precision=precision,
                             schedule=ScheduleConfig(peak_lr=3e-3, warmup_steps=2))
        assert cfg.autocast(torch.device("cpu")) == (precision == "bf16")
        model = pretrain(cfg, d, tmp_path / precision, tok.vocab_size, progress=False)
        assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
        rows = (tmp_path / precision / "metrics.jsonl").read_text().splitlines()
        runs[precision] = [json.loads(x)["lm_loss"] for x in rows]
    assert runs["bf16"][-1] < runs["bf16"][0]
    assert runs["bf16"][0] == pytest.approx(runs["fp32"][0], rel=2e-2)  # same start, bf16 rounding apart
    assert PretrainConfig().autocast(torch.device("cpu")) is False  # auto: fp32 on the CPU
    with pytest.raises(ValueError, match="precision must be"):
        PretrainConfig(precision="fp16")


def test_resume_without_checkpoint_and_bad_yaml(data, tmp_path):
    d, tok = data
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        pretrain(PretrainConfig(model=SMALL_MODEL, seq_len=64), d, tmp_path, tok.vocab_size, resume=True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("presett: tiny\n")
    with pytest.raises(ValueError, match="unknown keys"):
        PretrainConfig.from_yaml(bad)


def test_bad_settings_and_a_fresh_run_over_an_old_one(data, tmp_path):
    """Found by fuzzing: max_steps=0 ran the whole schedule and a negative one trained nothing;
    a fresh run into an earlier run's folder appended to its metrics and left its later
    checkpoints to a later --resume; zero sizes failed deep inside; unknown model fields were
    kept silently."""
    d, tok = data
    cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, max_steps=3, log_every=1,
                         checkpoint_every=3)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_steps must be >= 1"):
            pretrain(cfg, d, tmp_path, tok.vocab_size, max_steps=bad, progress=False)
    for field, value in (("batch_size", 0), ("log_every", 0), ("checkpoint_every", 0), ("seq_len", "abc")):
        with pytest.raises(ValueError, match=f"{field} must be an integer >= 1"):
            PretrainConfig(**{field: value})
    with pytest.raises(ValueError, match=r"model: unknown fields \['num_expert'\]"):
        PretrainConfig(model={"num_expert": 8})
    pretrain(cfg, d, tmp_path, tok.vocab_size, progress=False)
    with pytest.raises(FileExistsError, match="up to step 3.*--resume"):
        pretrain(cfg, d, tmp_path, tok.vocab_size, max_steps=2, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text('{"step": 7}\n')  # metrics without checkpoints: started anew
    pretrain(cfg, d, other, tok.vocab_size, max_steps=2, progress=False)
    steps = [json.loads(line)["step"] for line in (other / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_shipped_recipe_loads():
    cfg = PretrainConfig.from_yaml("tiny")  # the packaged recipe, by name
    assert cfg == PretrainConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "tiny.yaml")
    assert cfg.preset == "tiny" and cfg.schedule.warmup_steps == 10 and cfg.mixture and cfg.long_context.steps
    with pytest.raises(FileNotFoundError, match="shipped recipes: tiny"):
        PretrainConfig.from_yaml("huge")


def test_embedded_corpus_has_both_sources():
    docs = embedded_corpus(max_stdlib_docs=50, math_docs=50)
    sources = {d.source.split(":")[0] for d in docs}
    assert sources == {"stdlib", "math"} and len(docs) == 100
    assert any(ch.isdigit() for ch in docs[-1].text)


def test_quickstart_pipeline_small(tmp_path):
    cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, max_steps=3, log_every=1)
    report = run_quickstart(tmp_path, config=cfg, vocab_size=400, stdlib_docs=100, math_docs=200, progress=False)
    text = report.read_text()
    assert "trained 3 steps" in text and "## Samples" in text and "| 3 | warmup |" in text
    assert "## Data" in text and "cleaning: 300 documents" in text and "safety filter:" in text
    assert "![loss](loss.png)" in text and (tmp_path / "expert_load.png").exists()
    assert "nats/token against" in text and "for the unigram distribution" in text
    assert (tmp_path / "model" / "config.json").exists()
    # run again into its own folder: started afresh (an earlier run's checkpoints would stop pretrain)
    run_quickstart(tmp_path, config=cfg, vocab_size=400, stdlib_docs=100, math_docs=200, progress=False)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_unigram_entropy(tmp_path):
    from yilightning.quickstart import unigram_entropy

    write_tokens([[5, 6, 7]] * 10, tmp_path / "a", eos_id=3)  # 4 equally frequent tokens
    assert unigram_entropy(tmp_path / "a") == pytest.approx(np.log(4))
    write_tokens([[5] * 9], tmp_path / "mix" / "x", eos_id=3)
    write_tokens([[6] * 9], tmp_path / "mix" / "y", eos_id=3)  # sources are pooled: 9x5, 9x6, 2x3
    p = np.array([9, 9, 2]) / 20
    assert unigram_entropy(tmp_path / "mix") == pytest.approx(-(p * np.log(p)).sum())


DDP_RUN = """
import sys
from pathlib import Path
from tests.train.test_pretrain import SMALL_MODEL
from yilightning.train import PretrainConfig, ScheduleConfig, pretrain
cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, grad_accum=int(sys.argv[4]), max_steps=4,
                     log_every=1, checkpoint_every=2, schedule=ScheduleConfig(peak_lr=3e-3, warmup_steps=2))
pretrain(cfg, Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), progress=False)
"""


def test_two_process_ddp_matches_gradient_accumulation(data, tmp_path):
    """torchrun with 2 CPU processes (gloo) takes the micro-batches in turn, so its steps equal a
    single process accumulating over 2 micro-batches."""
    import subprocess
    import sys

    d, tok = data
    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "run.py"
    script.write_text(DDP_RUN)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    str(script), str(d), str(tmp_path / "ddp"), str(tok.vocab_size), "1"],
                   cwd=root, check=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    subprocess.run([sys.executable, str(script), str(d), str(tmp_path / "single"), str(tok.vocab_size), "2"],
                   cwd=root, check=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    ddp = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    single = [json.loads(x) for x in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ddp] == [1, 2, 3, 4] and [r["tokens"] for r in ddp] == [r["tokens"] for r in single]
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in single], rel=1e-4)
    assert load_latest(tmp_path / "ddp" / "checkpoints")["step"] == 4


def test_mixture_shifts_toward_the_high_quality_source_and_resumes(tmp_path):
    texts = [d.text for d in embedded_corpus(150, 300)]
    tok = train_tokenizer(texts, vocab_size=400)
    for name, docs in (("stdlib", texts[:150]), ("math", texts[150:])):
        write_tokens(tok.encode(docs), tmp_path / "data" / name, tok.eos_id)
    cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, max_steps=16, log_every=1, checkpoint_every=8,
                         schedule=ScheduleConfig(peak_lr=3e-3, warmup_steps=2),
                         mixture={"stdlib": {"stage1": 0.9, "fast_decay": 0.1}, "math": {"stage1": 0.1, "fast_decay": 0.9}})
    pretrain(cfg, tmp_path / "data", tmp_path / "a", tok.vocab_size, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["mixture"] == {"math": 0.1, "stdlib": 0.9} and rows[-1]["mixture"] == {"math": 0.9, "stdlib": 0.1}
    mid = [r["mixture"]["math"] for r in rows if r["stage"] == "stage2"]
    assert mid == sorted(mid) and 0.1 <= mid[0] < mid[-1] <= 0.9  # the gradual shift
    pretrain(cfg, tmp_path / "data", tmp_path / "b", tok.vocab_size, max_steps=8, progress=False)
    pretrain(cfg, tmp_path / "data", tmp_path / "b", tok.vocab_size, resume=True, progress=False)
    resumed = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in rows]


def test_batch_size_controller():
    from yilightning.train.schedule import BatchSizeController, DynamicBatchConfig

    c = BatchSizeController(DynamicBatchConfig(enabled=True, max_accum=4, window=2, min_improvement=0.05), 1)
    for loss in (5.0, 5.0, 3.0, 3.0):  # improving by 40%: stays
        assert c.update(loss, "stage2") == 1
    for loss in (2.99, 2.99):  # a plateau: doubles
        c.update(loss, "stage2")
    assert c.accum == 2
    assert c.update(0.1, "stage1") == 2 and c.update(9.0, "fast_decay") == 2  # only stage 2 decides
    again = BatchSizeController(DynamicBatchConfig(enabled=True, max_accum=4, window=2), 1)
    again.load_state_dict(c.state_dict())
    assert again.state_dict() == c.state_dict()
    with pytest.raises(ValueError, match="max_accum >= grad_accum"):
        BatchSizeController(DynamicBatchConfig(enabled=True, max_accum=1), 2)


def test_dynamic_batch_grows_on_a_plateau_and_resumes(data, tmp_path):
    from yilightning.train.schedule import DynamicBatchConfig

    d, tok = data
    cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, max_steps=16, log_every=1, checkpoint_every=9,
                         schedule=ScheduleConfig(peak_lr=3e-3, warmup_steps=2),
                         dynamic_batch=DynamicBatchConfig(enabled=True, max_accum=4, window=2, min_improvement=1.0))
    pretrain(cfg, d, tmp_path / "a", tok.vocab_size, progress=False)
    a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    accum = [r["grad_accum"] for r in a]
    assert accum[:9] == [1] * 9 and accum[-1] == 4 and accum == sorted(accum)  # grows in stage 2 only
    assert a[-1]["tokens"] - a[-2]["tokens"] == 4 * 2 * 64
    pretrain(cfg, d, tmp_path / "b", tok.vocab_size, max_steps=11, progress=False)
    pretrain(cfg, d, tmp_path / "b", tok.vocab_size, resume=True, progress=False)
    b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in b] == [r["loss"] for r in a] and [r["grad_accum"] for r in b] == accum


def test_long_context_extension_raises_rope_and_sequence_length(data, tmp_path):
    from yilightning.train.pretrain import LongContextConfig

    d, tok = data
    cfg = PretrainConfig(model=SMALL_MODEL, seq_len=64, batch_size=2, max_steps=6, log_every=1, checkpoint_every=8,
                         schedule=ScheduleConfig(peak_lr=3e-3, warmup_steps=2),
                         long_context=LongContextConfig(steps=4, seq_len=256, batch_size=1, rope_theta=50_000.0,
                                                        lr=5e-4))
    model = pretrain(cfg, d, tmp_path / "a", tok.vocab_size, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows][-5:] == ["fast_decay", "long_context", "long_context", "long_context",
                                              "long_context"]
    assert rows[-1]["tokens"] - rows[-2]["tokens"] == 256 and rows[-1]["lr"] == 5e-4
    assert model.config.rope_theta == 50_000.0
    assert {m.rope_base for m in model.modules() if hasattr(m, "rope_base")} == {50_000.0}
    pretrain(cfg, d, tmp_path / "b", tok.vocab_size, max_steps=8, progress=False)  # stops inside the extension
    pretrain(cfg, d, tmp_path / "b", tok.vocab_size, resume=True, progress=False)
    resumed = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in rows]


def test_context_grows_in_stage_2_with_constant_tokens_per_step(data, tmp_path):
    from yilightning.train.pretrain import seq_len_at

    d, tok = data
    cfg = PretrainConfig(model=SMALL_MODEL, seq_len=128, start_seq_len=32, batch_size=2, max_steps=20, log_every=1,
                         checkpoint_every=13, schedule=ScheduleConfig(peak_lr=3e-3, warmup_steps=2))
    pretrain(cfg, d, tmp_path / "a", tok.vocab_size, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lens = [r["seq_len"] for r in rows]
    assert lens[0] == 32 and lens[-1] == 128 and 64 in lens and lens == sorted(lens)
    assert {r["stage"] for r, n in zip(rows, lens) if n == 32} <= {"warmup", "stage1", "stage2"}
    assert all(b["tokens"] - a["tokens"] == 2 * 128 for a, b in zip(rows, rows[1:]))  # constant tokens per step
    pretrain(cfg, d, tmp_path / "b", tok.vocab_size, max_steps=13, progress=False)  # stop mid-growth
    pretrain(cfg, d, tmp_path / "b", tok.vocab_size, resume=True, progress=False)
    resumed = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in rows]
    with pytest.raises(ValueError, match="power of 2"):
        seq_len_at(0, PretrainConfig(seq_len=96, start_seq_len=64))


def test_expert_bias_is_updated_towards_balance(data, tmp_path):
    """With the model's expert_bias, every optimizer step moves each MoE layer's selection bias
    by expert_bias_rate against its load: over-loaded experts down, under-loaded ones up."""
    d, tok = data
    cfg = PretrainConfig(model={**SMALL_MODEL, "expert_bias": True}, seq_len=64, batch_size=2, max_steps=3,
                         checkpoint_every=3, expert_bias_rate=0.01, schedule=ScheduleConfig(warmup_steps=1))
    model = pretrain(cfg, d, tmp_path / "bias", tok.vocab_size, progress=False)
    biases = [m.expert_bias for m in model.modules() if getattr(m, "expert_bias", None) is not None]
    assert biases and all(b.abs().max() > 0 for b in biases)
    assert all(torch.all((b / 0.01).round() == b / 0.01) for b in biases)  # whole steps of the rate
    saved = load_latest(tmp_path / "bias" / "checkpoints")["model"]
    assert any(k.endswith("expert_bias") and v.abs().max() > 0 for k, v in saved.items())  # checkpointed
