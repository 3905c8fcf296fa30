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


def call(op, *args):  # noqa: ANN001, ANN201 (an OpOverloadPacket and its arguments)
    """``op(*args)`` for an op with a Python autograd rule, skipping that rule's Python layer
    when no gradient can be recorded (``torch.no_grad()``: generation): the rule would only
    redispatch, at ~5 us a call, a sizeable share of a small model's decoding step."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def op_names() -> list[str]:
    """Names of the compiled ops (empty when the extension is not loaded)."""
    return sorted({op for op, _ in KERNELS})
