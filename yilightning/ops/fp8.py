"""FP8 (e4m3) expert GEMMs with block scales, the recipe of DeepSeek-V3 (the report's MoE
operator reached 1,200 TFLOPS in FP8): activations get one fp32 scale per row and 128 columns,
expert weights one per 128 x 128 block, and the product accumulates in fp32, each 128-deep slice
of K scaled as it is added.

``quantize_fp8`` makes the operands (activations in one compiled pass on the CPU and the GPU),
``grouped_gemm_fp8`` multiplies them per expert (forward only: inference). On a Hopper GPU
(sm_90) the product is one CUTLASS kernel (TMA loads, FP8 WGMMA) for K and N multiples of 128;
everywhere else (CPU, other GPUs, other shapes) it is the same product computed from the
dequantized fp32 operands (``dequantize_fp8``, a CPU kernel) with ``grouped_gemm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from yilightning import _ext
from yilightning.ops._autocast import autocast_inputs
from yilightning.ops.grouped_gemm import grouped_gemm
from yilightning.ops.swiglu import swiglu

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448
BLOCK = 128  # columns (and weight rows) per scale
SCALE_MIN = torch.finfo(torch.float32).tiny  # 2^-126: a smaller scale would lose precision or be 0
_FLOATS = (torch.bfloat16, torch.float16, torch.float32)


def _blocks(n: int, size: int) -> int:
    return (n + size - 1) // size


def _check_block(block: tuple[int, int]) -> tuple[int, int]:
    if not isinstance(block, (tuple, list)) or len(block) != 2 or \
            any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in block):
        raise ValueError(f"block must be two positive ints (rows, columns), e.g. (1, 128), got {block!r}")
    return int(block[0]), int(block[1])


def _check_tensor(t: object, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _padded_tiles(x: torch.Tensor, br: int, bc: int) -> torch.Tensor:
    """fp32 x [..., R, C] zero-padded to whole blocks and viewed as [..., RB, br, CB, bc]; a
    block larger than x is cut to x's size first (the same blocks, without the padding)."""
    R, C = x.shape[-2:]
    br, bc = max(1, min(br, R)), max(1, min(bc, C))
    xf = F.pad(x.float(), (0, -C % bc, 0, -R % br))
    return xf.unflatten(-1, (-1, bc)).unflatten(-3, (-1, br))


def quantize_fp8(x: torch.Tensor, block: tuple[int, int] = (1, BLOCK)) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounds ``x`` to float8_e4m3fn with one fp32 scale per ``block`` of its last two dims.

    Args:
        x: a float tensor with at least 2 dims ``[..., R, C]``.
        block: ``(rows, columns)`` per scale: ``(1, 128)`` for activations ``[M, K]``,
            ``(128, 128)`` for expert weights ``[E, N, K]`` (what ``grouped_gemm_fp8`` takes).

    Returns:
        ``(q, scale)``: ``q`` of x's shape in float8_e4m3fn and ``scale`` fp32
        ``[..., ceil(R / rows), ceil(C / columns)]``, with ``x ~= q * scale`` blockwise. Each
        block's largest magnitude maps to 448 (e4m3's largest value); an all-zero block gets
        scale 1. The rounding error is at most 1/16 of a value's magnitude (3 mantissa bits),
        and values below 2^-9 of their block's largest magnitude flush towards zero. A block
        whose largest magnitude is below 448 x 2^-126 (5.3e-36) keeps scale 2^-126 (fp32's
        smallest normal number), so its values, all within 5.3e-36 of zero, lose that
        precision. Inf or NaN in x raise a ValueError on the CPU; on a GPU (no check: it would
        cost a sync) they make their block's values NaN.

    Activations (2-D, ``block=(1, 128)``) go through one compiled pass (CPU and CUDA kernels);
    other shapes and blocks through ``quantize_fp8_reference``, with the same result bit for bit.

    >>> q, s = quantize_fp8(torch.tensor([[1.0, -2.0, 0.5]]))
    >>> q.dtype, s.shape, dequantize_fp8(q, s).tolist()
    (torch.float8_e4m3fn, torch.Size([1, 1]), [[1.0, -2.0, 0.5]])
    """
    block = _check_quantize_args(x, block)
    if block == (1, BLOCK) and x.dim() == 2 and x.dtype in _FLOATS and \
            _ext.has_kernel("quantize_fp8_rows", x.device.type):
        return _ext.call(torch.ops.yilightning.quantize_fp8_rows, x.detach())
    return quantize_fp8_reference(x, block)


def _check_quantize_args(x: torch.Tensor, block: tuple[int, int]) -> tuple[int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point() or x.element_size() == 1:
        raise ValueError(f"quantize_fp8: x must be a float tensor [..., R, C] (not already FP8), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    return _check_block(block)


def quantize_fp8_reference(x: torch.Tensor, block: tuple[int, int] = (1, BLOCK)) -> tuple[torch.Tensor, torch.Tensor]:
    """``quantize_fp8`` in PyTorch ops (any block and number of dims)."""
    br, bc = _check_quantize_args(x, block)
    R, C = x.shape[-2:]
    tiles = _padded_tiles(x.detach(), br, bc)  # [..., RB, br, CB, bc]
    amax = tiles.abs().amax(dim=(-3, -1))  # [..., RB, CB]
    if not x.is_cuda and not torch.isfinite(amax).all():  # on a GPU this check would cost a sync
        raise ValueError("quantize_fp8: x has inf or NaN values; FP8 scales need finite inputs")
    # NaN stays NaN through the clamp; the floor keeps tiny blocks' scales normal numbers. The
    # divisor is a tensor: CUDA computes a division by a Python number as a * (1 / b), one ulp
    # off the kernels' a / b in about half the blocks.
    scale = torch.where(amax == 0, torch.ones_like(amax),
                        (amax / torch.full_like(amax, FP8_MAX)).clamp_min(SCALE_MIN))
    q = (tiles / scale[..., :, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    q = q.flatten(-2).flatten(-3, -2)[..., :R, :C]
    return q.contiguous(), scale


def dequantize_fp8(q: torch.Tensor, scale: torch.Tensor, block: tuple[int, int] = (1, BLOCK)) -> torch.Tensor:
    """The fp32 values ``q * scale`` of ``quantize_fp8``'s output (same ``block``): exact, as
    each e4m3 value and its product with the scale are fp32 numbers. A vectorised kernel on the
    CPU (this is the FP8 product's path there), ``dequantize_fp8_reference`` elsewhere."""
    br, bc = _check_dequantize_args(q, scale, block)
    if _ext.has_kernel("dequantize_fp8", q.device.type):
        return _ext.call(torch.ops.yilightning.dequantize_fp8, q, scale, br, bc)
    return dequantize_fp8_reference(q, scale, block)


def _check_dequantize_args(q: torch.Tensor, scale: torch.Tensor, block: tuple[int, int]) -> tuple[int, int]:
    br, bc = _check_block(block)
    _check_tensor(q, "dequantize_fp8: q")
    _check_tensor(scale, "dequantize_fp8: scale")
    if q.dim() < 2 or q.dtype != FP8_DTYPE:
        raise ValueError(f"dequantize_fp8: q must be float8_e4m3fn [..., R, C], got {q.dtype} {tuple(q.shape)}")
    R, C = q.shape[-2:]
    want = (*q.shape[:-2], _blocks(R, br), _blocks(C, bc))
    if tuple(scale.shape) != want or scale.dtype != torch.float32:
        raise ValueError(f"dequantize_fp8: scale must be float32 {want} for q {tuple(q.shape)} and block {block}, "
                         f"got {scale.dtype} {tuple(scale.shape)}")
    if scale.device != q.device:
        raise ValueError(f"dequantize_fp8: scale must be on q's device {q.device}, got {scale.device}")
    if scale.requires_grad:
        raise ValueError("dequantize_fp8: no gradient flows through FP8 values; pass scale.detach()")
    return br, bc


def dequantize_fp8_reference(q: torch.Tensor, scale: torch.Tensor, block: tuple[int, int] = (1, BLOCK)) -> torch.Tensor:
    """``dequantize_fp8`` in PyTorch ops."""
    br, bc = _check_dequantize_args(q, scale, block)
    R, C = q.shape[-2:]
    # blockwise broadcast on the zero-padded values (a repeat_interleave of the scales fused with
    # the product is miscompiled by torch.compile's CPU backend in torch 2.14: values of 1e35)
    tiles = _padded_tiles(q, br, bc) * scale[..., :, None, :, None]
    return tiles.flatten(-2).flatten(-3, -2)[..., :R, :C]


def _check(a: torch.Tensor, a_scale: torch.Tensor, b: torch.Tensor, b_scale: torch.Tensor,
           group_sizes: torch.Tensor, out_dtype: torch.dtype) -> None:
    for t, name in ((a, "a"), (a_scale, "a_scale"), (b, "b"), (b_scale, "b_scale"), (group_sizes, "group_sizes")):
        _check_tensor(t, f"grouped_gemm_fp8: {name}")
    if a.dtype != FP8_DTYPE or b.dtype != FP8_DTYPE:
        raise TypeError(f"grouped_gemm_fp8: a and b must be float8_e4m3fn (from quantize_fp8), got {a.dtype} and "
                        f"{b.dtype}")
    if a_scale.dtype != torch.float32 or b_scale.dtype != torch.float32:
        raise TypeError(f"grouped_gemm_fp8: a_scale and b_scale must be float32, got {a_scale.dtype} and "
                        f"{b_scale.dtype}")
    if out_dtype not in _FLOATS:
        raise TypeError(f"grouped_gemm_fp8: out_dtype must be one of {_FLOATS}, got {out_dtype}")
    if a.dim() != 2 or b.dim() != 3 or b.shape[2] != a.shape[1]:
        raise ValueError(f"grouped_gemm_fp8: a must be [M, K] and b [E, N, K] (the nn.Linear layout), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    (M, K), (E, N) = a.shape, b.shape[:2]
    if tuple(a_scale.shape) != (M, _blocks(K, BLOCK)):
        raise ValueError(f"grouped_gemm_fp8: a_scale must be [M={M}, ceil(K/128)={_blocks(K, BLOCK)}] "
                         f"(quantize_fp8(x, block=(1, 128))), got {tuple(a_scale.shape)}")
    if tuple(b_scale.shape) != (E, _blocks(N, BLOCK), _blocks(K, BLOCK)):
        raise ValueError(f"grouped_gemm_fp8: b_scale must be [E={E}, ceil(N/128)={_blocks(N, BLOCK)}, "
                         f"ceil(K/128)={_blocks(K, BLOCK)}] (quantize_fp8(w, block=(128, 128))), got "
                         f"{tuple(b_scale.shape)}")
    if group_sizes.dtype != torch.int64 or tuple(group_sizes.shape) != (E,):
        raise ValueError(f"grouped_gemm_fp8: group_sizes must be int64 [E={E}], got {group_sizes.dtype} "
                         f"{tuple(group_sizes.shape)}")
    devices = {t.device for t in (a, a_scale, b, b_scale, group_sizes)}
    if len(devices) > 1:
        raise ValueError(f"grouped_gemm_fp8: all arguments must be on one device, got {sorted(map(str, devices))}")
    if any(t.requires_grad for t in (a_scale, b_scale)):
        raise ValueError("grouped_gemm_fp8: forward only (inference); the scales must not require grad")


def fp8_kernel_runs(device: torch.device, K: int, N: int) -> bool:
    """Whether ``grouped_gemm_fp8`` on ``device`` with these K and N (and a bf16 output) runs the
    Hopper kernel; otherwise it computes the dequantized product."""
    return (device.type == "cuda" and _ext.has_kernel("grouped_gemm_fp8", "cuda") and K > 0 and N > 0
            and K % BLOCK == 0 and N % BLOCK == 0 and torch.cuda.get_device_capability(device)[0] == 9)


def grouped_gemm_fp8_reference(a: torch.Tensor, a_scale: torch.Tensor, b: torch.Tensor, b_scale: torch.Tensor,
                               group_sizes: torch.Tensor, *, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """``grouped_gemm_fp8`` from the dequantized operands: fp32 ``grouped_gemm``, then
    ``out_dtype``. The path everywhere but Hopper, and the yardstick for the kernel."""
    _check(a, a_scale, b, b_scale, group_sizes, out_dtype)
    a32 = dequantize_fp8(a, a_scale, (1, BLOCK))
    b32 = dequantize_fp8(b, b_scale, (BLOCK, BLOCK))
    with torch.autocast(a.device.type, enabled=False):  # autocast would round the operands to bf16
        return grouped_gemm(a32, b32, group_sizes, trans_b=True).to(out_dtype)


def grouped_gemm_fp8(a: torch.Tensor, a_scale: torch.Tensor, b: torch.Tensor, b_scale: torch.Tensor,
                     group_sizes: torch.Tensor, *, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """``c[rows of g] = (a * a_scale)[rows of g] @ (b[g] * b_scale[g]).T`` in FP8: ``[M, N]``.

    Args:
        a: float8_e4m3fn ``[M, K]``, rows grouped by expert; a_scale: fp32 ``[M, ceil(K/128)]``
            (``quantize_fp8(x, block=(1, 128))``).
        b: float8_e4m3fn ``[E, N, K]`` (the ``nn.Linear`` layout); b_scale: fp32
            ``[E, ceil(N/128), ceil(K/128)]`` (``quantize_fp8(w, block=(128, 128))``).
        group_sizes: int64 ``[E]`` summing to M, on a's device; zeros allowed (checked as
            ``grouped_gemm`` checks them).
        out_dtype: bfloat16 (the kernel's), float16 or float32.

    Forward only: for inference with weights quantized once. On a Hopper GPU, for K and N
    multiples of 128 and a bf16 output, one CUTLASS kernel multiplies the FP8 operands on the
    tensor cores (group sizes never leave the device); elsewhere the same product is computed from
    the dequantized operands in fp32 (``grouped_gemm_fp8_reference``), which saves no time.

    >>> x, w = torch.randn(6, 256), torch.randn(2, 128, 256)
    >>> (xq, xs), (wq, ws) = quantize_fp8(x), quantize_fp8(w, block=(128, 128))
    >>> out = grouped_gemm_fp8(xq, xs, wq, ws, torch.tensor([4, 2]))
    >>> out.shape, out.dtype
    (torch.Size([6, 128]), torch.bfloat16)
    """
    _check(a, a_scale, b, b_scale, group_sizes, out_dtype)
    if out_dtype == torch.bfloat16 and fp8_kernel_runs(a.device, a.shape[1], b.shape[1]):
        return torch.ops.yilightning.grouped_gemm_fp8(a, a_scale, b, b_scale, group_sizes)
    return grouped_gemm_fp8_reference(a, a_scale, b, b_scale, group_sizes, out_dtype=out_dtype)


def expert_ffn_fp8(x_sorted: torch.Tensor, w_gate_up: tuple[torch.Tensor, torch.Tensor],
                   w_down: tuple[torch.Tensor, torch.Tensor], group_sizes: torch.Tensor) -> torch.Tensor:
    """``expert_ffn`` in FP8, forward only: the rows quantized per 128 columns, the gate/up
    product, SwiGLU in bf16, the activation quantized again, the down product; x's dtype out
    (the autocast dtype under autocast, as ``expert_ffn``).

    Args:
        x_sorted: ``[T*k, H]`` rows grouped by expert.
        w_gate_up, w_down: ``quantize_fp8(w, block=(128, 128))`` of the ``[E, 2I, H]`` and
            ``[E, H, I]`` expert weights.
        group_sizes: int64 ``[E]``.
    """
    x_sorted, = autocast_inputs(x_sorted.device, x_sorted)
    h = grouped_gemm_fp8(*quantize_fp8(x_sorted), *w_gate_up, group_sizes)
    return grouped_gemm_fp8(*quantize_fp8(swiglu(h)), *w_down, group_sizes).to(x_sorted.dtype)


if _ext.module is not None:

    @torch.library.register_fake("yilightning::quantize_fp8_rows")
    def _quantize_fp8_rows_fake(x):  # noqa: ANN001
        return (x.new_empty(x.shape, dtype=FP8_DTYPE),
                x.new_empty((x.shape[0], _blocks(x.shape[1], BLOCK)), dtype=torch.float32))

    @torch.library.register_fake("yilightning::dequantize_fp8")
    def _dequantize_fp8_fake(q, scale, block_rows, block_cols):  # noqa: ANN001
        return q.new_empty(q.shape, dtype=torch.float32)

    @torch.library.register_fake("yilightning::grouped_gemm_fp8")
    def _grouped_gemm_fp8_fake(a, a_scale, b, b_scale, group_sizes):  # noqa: ANN001
        return a.new_empty((a.shape[0], b.shape[1]), dtype=torch.bfloat16)
