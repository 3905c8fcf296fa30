"""The ``yilightning`` command: one sub-command per job."""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml


def _doctor(args: argparse.Namespace) -> int:
    from yilightning.info import build_info, format_build_info

    info = build_info()
    print(json.dumps(info, indent=2) if args.json else format_build_info(info))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    """Build report, op self-check, then the tiny pipeline: corpus, tokenizer, pre-training,
    samples, report."""
    from yilightning.info import build_info, format_build_info
    from yilightning.selfcheck import format_results, run_self_check

    print("== Build ==")
    print(format_build_info(build_info()))
    print("\n== Self-check: every op against its pure-PyTorch reference ==")
    results = run_self_check()
    print(format_results(results))
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        return 1
    from yilightning.quickstart import run_quickstart
    from yilightning.train import PretrainConfig

    cfg = PretrainConfig.from_yaml(args.config)
    if args.max_steps:
        cfg.max_steps = args.max_steps
    print(f"\n== Tiny pipeline -> {args.out} ==")
    report = run_quickstart(args.out, config=cfg, decontaminate=args.decontaminate)
    print(report.read_text())
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from yilightning.quickstart import prepare_data
    from yilightning.train import PretrainConfig, pretrain

    cfg = PretrainConfig.from_yaml(args.config)
    tok, data_dir = prepare_data(Path(args.out), decontaminate=args.decontaminate, sources=args.data,
                                 by_source=bool(cfg.mixture))
    if args.precision:
        cfg.precision = args.precision
    model = pretrain(cfg, data_dir, args.out, tok.vocab_size, resume=args.resume, max_steps=args.max_steps)
    model.save_pretrained(Path(args.out) / "model")
    print(f"model saved to {Path(args.out) / 'model'}")
    return 0


def _kv_cache(args: argparse.Namespace) -> int:
    from yilightning.layers import KVLayout, kv_cache_table

    layout = KVLayout(args.layers, args.kv_heads, args.head_dim, args.window, args.swa_per_full,
                      not args.no_share)
    print(f"KV cache per sequence, bf16: {args.layers} layers, {args.kv_heads} KV heads x {args.head_dim}, "
          f"window {args.window}, {args.swa_per_full} sliding-window layers per full layer, "
          f"full-layer KV {'not ' if args.no_share else ''}shared in pairs\n")
    print(kv_cache_table(layout))
    return 0


def _info(args: argparse.Namespace) -> int:
    import torch

    from yilightning.layers import kv_cache_table
    from yilightning.model import YiLightningConfig, YiLightningForCausalLM

    config = YiLightningConfig.preset(args.preset)
    with torch.device("meta"):  # counts parameters without allocating them
        counts = YiLightningForCausalLM(config).parameter_counts()
    print(f"preset {args.preset}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"{config.num_attention_heads}/{config.num_key_value_heads} heads x {config.head_dim}, "
          f"{config.num_experts} experts (top-{config.num_experts_per_tok}, width {config.moe_intermediate_size}, "
          f"{config.num_shared_experts} shared), window {config.sliding_window}, vocabulary {config.vocab_size}")
    print(f"parameters: {counts['total'] / 1e6:,.1f}M total, {counts['active'] / 1e6:,.1f}M active per token\n")
    print(kv_cache_table(config.kv_layout()))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from yilightning.model import YiLightningForCausalLM
    from yilightning.model.text import stream_text
    from yilightning.tokenizer import Tokenizer

    tok = Tokenizer.load(args.model)
    model = YiLightningForCausalLM.from_pretrained(args.model).eval()
    safety = None
    if args.safety:
        from yilightning.safety import RAISE

        safety = RAISE()
    for piece in stream_text(model, tok, args.prompt, max_new_tokens=args.max_new_tokens, safety=safety,
                             temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed):
        print(piece, end="", flush=True)
    print()
    return 0


def _safety_train(args: argparse.Namespace) -> int:
    from yilightning.safety.classifier import ClassifierConfig, default_path, evaluate_classifier, train_classifier

    clf = train_classifier(ClassifierConfig(seed=args.seed), progress=True)
    out = args.out or default_path()
    clf.save(out)
    print(f"saved {out}; calibrated 'unsafe' threshold {clf.threshold:.3f}\n")
    iid, acts = evaluate_classifier(clf, "iid", seed=args.seed), evaluate_classifier(clf, "acts", seed=args.seed)
    print("per category: held-back tenth of the training corpus (i.i.d.) | held-out acts, templates and documents\n")
    print("| category | P | R | F1 | n | P (unseen acts) | R | F1 | n |\n|---|---|---|---|---|---|---|---|---|")
    for cat in iid:
        a, b = iid[cat], acts[cat]
        print(f"| {cat} | {a['precision']:.2f} | {a['recall']:.2f} | {a['f1']:.2f} | {a['support']} "
              f"| {b['precision']:.2f} | {b['recall']:.2f} | {b['f1']:.2f} | {b['support']} |")
    return 0


def _safety_eval(args: argparse.Namespace) -> int:
    from yilightning.safety import RAISE
    from yilightning.safety.evaluate import evaluate

    engine = RAISE()
    acts = ("seen", "unseen") if args.acts == "both" else (args.acts,)
    reports = {a: evaluate(engine, acts=a) for a in acts}
    if args.json:
        print(json.dumps({a: {"caught": r.caught, "obfuscated_caught": r.obfuscated_caught,
                              "false_positive_rate": r.false_positive_rate, "benign_any_flag": r.benign_any_flag,
                              "mean_latency_ms": r.mean_latency_ms,
                              "rows": {x.attack: {"cases": x.cases, "flagged": x.flagged} for x in r.red_team + r.benign}}
                          for a, r in reports.items()}, indent=2))
        return 0
    for a, r in reports.items():
        print(f"## {a} acts ({'training-split acts in held-out attack forms' if a == 'seen' else 'held-out acts'})\n")
        print(r.table() + "\n")
    return 0


def _safety_check(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from yilightning.safety import RAISE

    engine = RAISE()
    verdict = engine.check_output(args.text) if args.output else engine.check_input(args.text)
    if args.json:
        print(json.dumps(asdict(verdict), indent=2, ensure_ascii=False))
    else:
        print(f"{'safe' if verdict.safe else 'unsafe'}: action {verdict.action}, categories "
              f"{', '.join(verdict.categories) or '-'} {' '.join(verdict.codes)}\nrewritten: {verdict.rewritten}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yilightning", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="print how the package was built and what runs here")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(run=_doctor)
    quick = sub.add_parser("quickstart", help="the main job on the embedded default")
    quick.add_argument("--out", default="runs/quickstart", help="run folder (default runs/quickstart)")
    quick.add_argument("--config", default="tiny", help="a pretrain recipe: YAML path or shipped name (default: tiny)")
    quick.add_argument("--max-steps", type=int, default=None, help="override the number of steps")
    quick.add_argument("--decontaminate", default=None, metavar="FILE",
                       help="benchmark text (.jsonl or one example per line): drop documents sharing a 30-word span")
    quick.set_defaults(run=_quickstart)
    pre = sub.add_parser("pretrain", help="pre-train from a YAML recipe on the embedded corpus or your files")
    pre.add_argument("--data", nargs="+", default=None, metavar="PATH",
                     help="text/JSONL/Parquet files or folders to train on instead of the embedded corpus")
    pre.add_argument("--config", required=True, help="a YAML recipe path, or a shipped recipe name: tiny")
    pre.add_argument("--out", default="runs/pretrain", help="run folder: data, metrics.jsonl, checkpoints, model")
    pre.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    pre.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    pre.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                     help="forward precision (default: the recipe's; auto = bf16 autocast on a GPU, fp32 on the CPU)")
    pre.add_argument("--decontaminate", default=None, metavar="FILE",
                     help="benchmark text (.jsonl or one example per line): drop documents sharing a 30-word span")
    pre.set_defaults(run=_pretrain)
    kv = sub.add_parser("kv-cache", help="KV-cache memory of the hybrid layout vs full attention, 4K to 128K")
    kv.add_argument("--layers", type=int, default=64, help="decoder layers (default 64)")
    kv.add_argument("--kv-heads", type=int, default=8, help="key/value heads (default 8)")
    kv.add_argument("--head-dim", type=int, default=128, help="head dimension (default 128)")
    kv.add_argument("--window", type=int, default=4096, help="sliding window (default 4096, as inferred from the report)")
    kv.add_argument("--swa-per-full", type=int, default=3, help="sliding-window layers per full layer (default 3)")
    kv.add_argument("--no-share", action="store_true", help="full-attention layers keep their own KV")
    kv.set_defaults(run=_kv_cache)
    info = sub.add_parser("info", help="parameters, active parameters and the KV-cache table of a preset")
    info.add_argument("--preset", default="paper", help="tiny, small or paper (default)")
    info.set_defaults(run=_info)
    gen = sub.add_parser("generate", help="stream a completion from a saved model folder (with its tokenizer)")
    gen.add_argument("--model", required=True, help="folder written by save_pretrained + Tokenizer.save")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--safety", action="store_true", help="screen the prompt and guard the output with RAISE")
    gen.set_defaults(run=_generate)
    st = sub.add_parser("safety-train", help="train the RAISE risk classifier on the generated safety corpus")
    st.add_argument("--out", default=None, help="where to save it (default: the cache the engine loads from)")
    st.add_argument("--seed", type=int, default=0)
    st.set_defaults(run=_safety_train)
    se = sub.add_parser("safety-eval", help="red-team attack success and benign false positives of RAISE")
    se.add_argument("--acts", choices=("seen", "unseen", "both"), default="both",
                    help="harmful acts from the training split in held-out attack forms, held-out acts, or both")
    se.add_argument("--json", action="store_true")
    se.set_defaults(run=_safety_eval)
    sc = sub.add_parser("safety-check", help="RAISE verdict on one text")
    sc.add_argument("text")
    sc.add_argument("--output", action="store_true", help="check it as a model output (default: a user input)")
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(run=_safety_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a subcommand; a user's mistake (a bad value, path or recipe) prints its message and
    returns 2, as argparse does for a bad flag (``YL_TRACEBACK=1`` shows the traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, yaml.YAMLError) as e:
        if os.environ.get("YL_TRACEBACK", "").strip() not in ("", "0"):
            raise
        print(f"yilightning {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
