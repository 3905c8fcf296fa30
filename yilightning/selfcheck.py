"""Self-check: every op (compiled kernel or fallback) against its pure-PyTorch reference.

Runs each op family in ``yilightning.ops.SPECS`` on every available device and dtype, forward
and backward, and compares with the reference computed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from yilightning import _ext
from yilightning.ops import SPECS, OpSpec

# Allowed max |ours - fp32 reference| / (1 + |reference|): the output rounding of the dtype,
# with headroom for fp32 accumulation order.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}


@dataclass
class CheckResult:
    op: str
    device: str
    dtype: str
    path: str  # "kernel" or "reference"
    fwd_err: float
    bwd_err: float
    ok: bool


def _rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    if ours.numel() == 0:
        return 0.0
    return ((ours.float() - ref).abs() / (1 + ref.abs())).max().item()


def check_op(spec: OpSpec, device: torch.device, dtype: torch.dtype, seed: int = 0) -> CheckResult:
    """Forward and backward of ``spec.fn`` at ``dtype`` against ``spec.reference`` in fp32."""
    torch.manual_seed(seed)
    inputs = [t.requires_grad_() for t in spec.example_inputs(device, dtype)]
    ref_inputs = [t.detach().float().requires_grad_() for t in inputs]
    out, ref = spec.fn(*inputs), spec.reference(*ref_inputs)
    grad = torch.randn_like(ref)
    out.backward(grad.to(out.dtype))
    ref.backward(grad)
    fwd = _rel_err(out, ref.detach())
    bwd = max(_rel_err(a.grad, b.grad) for a, b in zip(inputs, ref_inputs))
    tol = TOLERANCE[dtype]
    return CheckResult(
        spec.name,
        device.type,
        str(dtype).removeprefix("torch."),
        "kernel" if _ext.has_kernel(spec.name, device.type) else "reference",
        fwd,
        bwd,
        fwd <= tol and bwd <= 2 * tol,
    )


def run_self_check() -> list[CheckResult]:
    """Checks every op on the CPU (and the GPU when one is visible) in fp32, bf16 and fp16."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    return [
        check_op(spec, device, dtype)
        for spec in SPECS.values()
        for device in devices
        for dtype in TOLERANCE
    ]


def format_results(results: list[CheckResult]) -> str:
    rows = [f"{'op':<14}{'device':<8}{'dtype':<10}{'path':<11}{'fwd err':>10}{'bwd err':>10}  result"]
    for r in results:
        rows.append(
            f"{r.op:<14}{r.device:<8}{r.dtype:<10}{r.path:<11}{r.fwd_err:>10.2e}{r.bwd_err:>10.2e}  "
            + ("ok" if r.ok else "FAIL")
        )
    return "\n".join(rows)
