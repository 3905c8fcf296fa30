"""``yilightning.build_info()`` and the report that ``yilightning doctor`` prints."""

from __future__ import annotations

from typing import Any

import torch

from yilightning import _ext


def build_info() -> dict[str, Any]:
    """How the package was built and what this machine can run.

    Keys: package and torch versions, whether the extension loaded (and why not), the CUDA
    version and GPU architectures it was compiled for, the CUTLASS version, per-op kernel
    availability (``{"swiglu": {"cpu": True, "cuda": True}, ...}``), whether the CPU kernels
    call the BLAS directly and multiply bf16 natively (AVX512-BF16; ``YL_CPU_BF16=0`` turns
    that off), whether the MoE experts' bf16 forward runs on AMX tiles (``YL_CPU_AMX=0`` turns
    that off), the OpenMP thread count and the visible GPUs.
    """
    from yilightning import __version__

    compiled = _ext.module.build_info() if _ext.module is not None else {}
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "yilightning": __version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "extension_loaded": _ext.module is not None,
        "extension_error": _ext.load_error,
        "built_against_torch": compiled.get("torch_version"),
        "compiler": compiled.get("compiler"),
        "cuda_kernels_compiled": bool(compiled.get("with_cuda")),
        "cuda_version": compiled.get("cuda_version"),
        "cuda_archs": compiled.get("cuda_archs") or None,
        "cutlass_version": compiled.get("cutlass_version") or None,
        "sm90_kernels": bool(compiled.get("sm90_kernels")),
        "cpu_direct_blas": bool(compiled.get("cpu_direct_blas")),
        "cpu_native_bf16": bool(compiled.get("cpu_native_bf16")),
        "cpu_amx": bool(compiled.get("cpu_amx")),
        "cpu_gemm": compiled.get("cpu_gemm") or "blas",
        "cpu_skinny": compiled.get("cpu_skinny") or "none",
        "ops": {op: {dev: _ext.has_kernel(op, dev) for dev in ("cpu", "cuda")} for op in _ext.op_names()},
        "omp_threads": torch.get_num_threads(),
        "gpus": gpus,
    }


def format_build_info(info: dict[str, Any]) -> str:
    """The build report as aligned text (what ``yilightning doctor`` prints)."""
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    ext = "loaded" if info["extension_loaded"] else f"NOT loaded ({info['extension_error']})"
    lines = [
        f"yilightning      {info['yilightning']}",
        f"torch            {info['torch']} (CUDA build: {info['torch_cuda'] or 'no'})",
        f"extension        {ext}",
    ]
    if info["extension_loaded"]:
        lines += [
            f"built against    torch {info['built_against_torch']}, {info['compiler']}",
            f"CUDA kernels     {yes(info['cuda_kernels_compiled'])}"
            + (f" (CUDA {info['cuda_version']}, archs {info['cuda_archs']})" if info["cuda_kernels_compiled"] else ""),
            f"CUTLASS          {info['cutlass_version'] or 'not found'}"
            + (" (Hopper TMA/WGMMA grouped GEMMs compiled: bf16/fp16 and FP8)" if info["sm90_kernels"] else ""),
            f"CPU GEMMs        fp32 "
            + ("our tiled AVX-512 kernel" if info["cpu_gemm"] == "avx512" else
               f"BLAS {'direct' if info['cpu_direct_blas'] else 'through at::mm'}") + ", bf16 "
            + ("native (AVX512-BF16" + (", AMX tiles for the MoE experts" if info["cpu_amx"] else "") + ")"
               if info["cpu_native_bf16"] else "converted to fp32")
            + f", few-row products {info['cpu_skinny'] if info['cpu_skinny'] != 'none' else 'by the BLAS'}",
        ]
    lines += [
        f"OpenMP threads   {info['omp_threads']}",
        f"GPUs visible     {', '.join(info['gpus']) or 'none'}",
        "",
        f"{'op':<24}{'CPU kernel':<12}CUDA kernel",
    ]
    for op, devs in info["ops"].items():
        lines.append(f"{op:<24}{yes(devs['cpu']):<12}{yes(devs['cuda'])}")
    if not info["ops"]:
        lines.append("(no compiled ops: every op runs its pure-PyTorch reference)")
    return "\n".join(lines)
