"""Loads the compiled extension ``yilightning._C`` tolerantly and answers "is there a kernel?".

If the extension is missing or broken, one warning names the cause and every op falls back to
its pure-PyTorch reference. ``YL_DISABLE_EXT=1`` forces the fallback silently (tests use it).
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

import torch

NAMESPACE = "yilightning"
DISABLED = os.environ.get("YL_DISABLE_EXT", "").strip() not in ("", "0")


def _load() -> tuple[ModuleType | None, str | None]:
    if DISABLED:
        return None, "disabled by YL_DISABLE_EXT=1"
    try:
        from yilightning import _C
    except Exception as e:  # ImportError, OSError (bad .so), undefined symbols, ...
        reason = f"{type(e).__name__}: {e}"
        warnings.warn(
            f"yilightning: compiled kernels unavailable ({reason}); every op falls back to its "
            "pure-PyTorch reference. Rebuild with `pip install --no-build-isolation -e .` and "
            "run `yilightning doctor`.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None, reason
    return _C, None


module, load_error = _load()

_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


def _registered_kernels() -> frozenset[tuple[str, str]]:
    if module is None:
        return frozenset()
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith(NAMESPACE + "::")]
    return frozenset(
        (name.split("::", 1)[1], device)
        for name in names
        for device, key in _DISPATCH_KEYS.items()
        if torch._C._dispatch_has_kernel_for_dispatch_key(name, key)
    )


# Computed once: a plain set lookup is free in eager mode and traceable by torch.compile.
KERNELS = _registered_kernels()


def has_kernel(op: str, device_type: str) -> bool:
    """True if ``torch.ops.yilightning.<op>`` has a compiled kernel for ``device_type``."""
    return (op, device_type) in KERNELS


# Where _ext.call sends a no-grad call: straight to the kernel of the first argument's device.
_BACKEND_KEYS = {"cpu": torch._C.DispatchKeySet(torch._C.DispatchKey.CPU),
                 "cuda": torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)}


def call(op, *args):  # noqa: ANN001, ANN201 (an OpOverloadPacket and its arguments)
    """``op(*args)``, with a short path when no gradient can be recorded: under
    ``torch.no_grad()`` (generation, a prefill), or when no tensor argument requires grad
    (inference code without ``no_grad``; the router's indices, a frozen weight's input). There
    the call goes straight to the op's CPU or CUDA kernel (``OpOverload.redispatch``), skipping
    the dispatcher's Python layers (the packet's overload resolution, the autograd rule that
    would only redispatch): ~3 us a call instead of ~11, measured on the CPU, where a small
    model's decoding step makes ~120 op calls; with grad mode on, ``route`` of one token went
    from 24 to 14-18 us. The short path is taken only when every tensor argument is a plain
    tensor or parameter (no subclass, e.g. a fake tensor) on one CPU or CUDA device, with no
    Python dispatch mode, functorch transform or JIT trace active; callers cast for autocast
    themselves (ops/_autocast.py), so skipping the autocast key changes nothing. Only for ops
    that do not modify their inputs and return no views of them."""
    if torch.compiler.is_compiling():
        return op(*args)
    grad = torch.is_grad_enabled()
    if _plain(args, grad) and not torch._C._len_torch_dispatch_stack() and \
            not torch._C._are_functorch_transforms_active() and not torch.jit.is_tracing():
        return op.default.redispatch(_BACKEND_KEYS[args[0].device.type], *args)
    if grad:
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def _plain(args: tuple, grad: bool = False) -> bool:  # noqa: ANN001
    """Every tensor argument a plain tensor (or parameter) on the first one's CPU/CUDA device,
    and, with ``grad`` (grad mode on), none requiring grad."""
    first = args[0]
    if type(first) not in _PLAIN or first.device.type not in _BACKEND_KEYS or (grad and first.requires_grad):
        return False
    device = first.device
    for a in args[1:]:  # a plain loop: this runs on every op call
        if isinstance(a, torch.Tensor) and (type(a) not in _PLAIN or a.device != device or (grad and a.requires_grad)):
            return False
    return True


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def op_names() -> list[str]:
    """Names of the compiled ops (empty when the extension is not loaded)."""
    return sorted({op for op, _ in KERNELS})
