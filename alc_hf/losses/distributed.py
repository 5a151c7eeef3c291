"""The little process-group logic the losses need beyond what sentence-transformers' utilities offer."""

from __future__ import annotations

import torch.distributed as dist
from sentence_transformers.util import get_world_size
from torch import Tensor, nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and get_world_size() > 1


def sum_across_processes(tensor: Tensor) -> Tensor:
    """The element-wise sum over processes of a tensor that needs no gradient (counts, for global means)."""
    if not is_distributed():
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients_across_processes(module: nn.Module) -> None:
    """Make ``module``'s parameter gradients the average over processes, as DDP does for the encoder.

    The trainer wraps only the encoder in DistributedDataParallel; parameters owned by a loss (the ALC pair
    head) would otherwise receive each process's own gradient and drift apart. Every process runs the same
    backward graph, so the hooks fire in the same order everywhere. Idempotent.
    """
    if getattr(module, "_alc_hf_gradients_averaged", False):
        return

    def average(gradient: Tensor) -> Tensor:
        gradient = gradient.clone()
        dist.all_reduce(gradient, op=dist.ReduceOp.SUM)
        return gradient / get_world_size()

    for parameter in module.parameters():
        if parameter.requires_grad:
            parameter.register_hook(average)
    module._alc_hf_gradients_averaged = True
