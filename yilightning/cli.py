"""The ``yilightning`` command: one sub-command per job."""

from __future__ import annotations

import argparse
import json
import sys


def _doctor(args: argparse.Namespace) -> int:
    from yilightning.info import build_info, format_build_info

    info = build_info()
    print(json.dumps(info, indent=2) if args.json else format_build_info(info))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    """Until the tiny pre-training pipeline lands: the build report and the op self-check."""
    from yilightning.info import build_info, format_build_info
    from yilightning.selfcheck import format_results, run_self_check

    print("== Build ==")
    print(format_build_info(build_info()))
    print("\n== Self-check: every op against its pure-PyTorch reference ==")
    results = run_self_check()
    print(format_results(results))
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _kv_cache(args: argparse.Namespace) -> int:
    from yilightning.layers import KVLayout, kv_cache_table

    layout = KVLayout(args.layers, args.kv_heads, args.head_dim, args.window, args.swa_per_full,
                      not args.no_share)
    print(f"KV cache per sequence, bf16: {args.layers} layers, {args.kv_heads} KV heads x {args.head_dim}, "
          f"window {args.window}, {args.swa_per_full} sliding-window layers per full layer, "
          f"full-layer KV {'not ' if args.no_share else ''}shared in pairs\n")
    print(kv_cache_table(layout))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yilightning", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="print how the package was built and what runs here")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(run=_doctor)
    quick = sub.add_parser("quickstart", help="the main job on the embedded default")
    quick.set_defaults(run=_quickstart)
    kv = sub.add_parser("kv-cache", help="KV-cache memory of the hybrid layout vs full attention, 4K to 128K")
    kv.add_argument("--layers", type=int, default=64, help="decoder layers (default 64)")
    kv.add_argument("--kv-heads", type=int, default=8, help="key/value heads (default 8)")
    kv.add_argument("--head-dim", type=int, default=128, help="head dimension (default 128)")
    kv.add_argument("--window", type=int, default=4096, help="sliding window (default 4096, as inferred from the report)")
    kv.add_argument("--swa-per-full", type=int, default=3, help="sliding-window layers per full layer (default 3)")
    kv.add_argument("--no-share", action="store_true", help="full-attention layers keep their own KV")
    kv.set_defaults(run=_kv_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
