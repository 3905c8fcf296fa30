"""What identifies weights' current values, for what is derived from them and kept (the MoE
layer's packed experts, attention's stacked q/k/v projections, a forward's deferred LM head)."""

from __future__ import annotations

import weakref

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

# Steps taken in this process by any torch.optim optimizer since the first stamp: fused
# optimizers (AdamW(fused=True), the trainer's) write the weights without bumping their version.
_optimizer_steps = 0
_step_hook = None


def _count_optimizer_step(*_) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


def weights_stamp(*tensors: torch.Tensor) -> tuple:
    """A value that two calls return equal only if no tensor was given new storage (a new
    ``.data``, ``load_state_dict(assign=True)``, ``.to()``), changed in place (its version: an
    in-place op, ``load_state_dict``, a foreach optimizer) or possibly changed by an optimizer
    step (any ``torch.optim`` optimizer, fused ones included). Storages are held by weak
    reference, which dies with them, so a new storage at a freed one's address is not taken for
    it. Unseen: a change written in place through ``.data`` (``w.data.copy_(...)``), which
    PyTorch does not count. Stamps hold weak references and cannot be pickled."""
    global _step_hook
    if _step_hook is None:
        _step_hook = register_optimizer_step_post_hook(_count_optimizer_step)
    return (_optimizer_steps,) + tuple((weakref.ref(t.untyped_storage()), t.storage_offset(), t._version)
                                       for t in tensors)
