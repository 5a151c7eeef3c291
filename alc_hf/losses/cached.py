from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import torch
from sentence_transformers.base.losses.gradcache import (
    CachedLossMixin,
    _validate_mini_batch_num_tokens,
    has_static_embedding_input,
    uses_gradient_cache,
)
from torch import Tensor, nn

from alc_hf.losses.base import InBatchLoss, LossParts, describe_loss, label_ids_from_texts


def add_parameter_gradients(grad_output: Tensor, gradients: list[tuple[nn.Parameter, Tensor]]) -> None:
    """Accumulate the loss's own parameters' gradients (computed in the cached step, per unit of loss) scaled by what
    the outer backward hands the loss: the gradient scaler's factor and the accumulation division reach them too."""
    for parameter, gradient in gradients:
        scaled = gradient * grad_output.to(gradient.dtype)
        parameter.grad = scaled if parameter.grad is None else parameter.grad + scaled


class CachedLoss(CachedLossMixin, nn.Module):
    def __init__(
        self,
        loss: nn.Module,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        """Any alc_hf loss (or composition) at any batch size with bounded memory: GradCache (Gao et al. 2021), as
        sentence-transformers' ``CachedMultipleNegativesRankingLoss`` does for MNRL::

            1. embed every column in mini-batches of ``mini_batch_size`` texts, without gradients;
            2. compute ``loss`` on the whole batch from those embeddings (every query against every candidate, the
               hardest negatives of the whole batch, TCM over all its pairs) and back-propagate it to the
               embeddings and to the loss's own parameters (the ALC pair head), keeping those gradients;
            3. in the outer backward pass, embed each mini-batch again with gradients (dropout replayed) and
               back-propagate its cached embedding gradients into the encoder.

        The loss and every gradient are those of ``loss`` without caching, up to float rounding (a test checks
        it): only the encoder's activations are bounded, to one mini-batch at a time; the scored batch is
        ``[B, M]`` floats and the pair head's inputs O(B·k·d). The encoder runs twice per step (steps 1 and 3),
        the price of that memory. The parts are returned and logged as ``loss`` names them.

        Args:
            loss: the loss to compute, built on the model to train: ``TCMLoss(model, ALCLoss(model))``, any alc_hf
                loss, or a sentence-transformers loss with ``compute_loss_from_embeddings`` such as
                ``MultipleNegativesRankingLoss(model, hardness_mode=...)``. Not itself a gradient-caching loss.
            mini_batch_size: texts per encoder pass; bounds the memory, not the batch (its negatives are the
                whole batch's). Smaller is leaner and slower.
            mini_batch_num_tokens: instead, at most this many non-padding tokens per encoder pass.
            show_progress_bar: show the mini-batches' progress.

        Inputs:
            +-------------------------------------------------+---------------------------------------------------+
            | Texts                                           | Labels                                            |
            +=================================================+===================================================+
            | what ``loss`` takes                             | what ``loss`` takes                               |
            +-------------------------------------------------+---------------------------------------------------+

        References:
            Gao, Zhang, Han, Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
            RepL4NLP 2021, arXiv 2101.06983.

        Example:
            ::

                from alc_hf import ALCLoss, CachedLoss, TCMLoss

                # batch 1024 from the sampler, the encoder sees 64 texts at a time
                loss = CachedLoss(TCMLoss(model, base_loss=ALCLoss(model)), mini_batch_size=64)
        """
        super().__init__()
        if uses_gradient_cache(loss):
            raise TypeError(f"CachedLoss cannot wrap {type(loss).__name__}: it caches gradients itself")
        if not isinstance(loss, nn.Module) or not callable(getattr(loss, "compute_loss_from_embeddings", None)):
            raise TypeError(
                f"CachedLoss needs a loss object with compute_loss_from_embeddings(embeddings, labels), such as "
                f"TCMLoss(model, ALCLoss(model)) or MultipleNegativesRankingLoss(model); got {loss!r}"
            )
        if has_static_embedding_input(loss.model):
            raise ValueError(
                "CachedLoss cannot embed a StaticEmbedding model in mini-batches (its inputs have no batch "
                "dimension to split); use the loss without CachedLoss"
            )
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        _validate_mini_batch_num_tokens(mini_batch_num_tokens)
        # The attribute must be called `model`: the trainer swaps in the DDP-wrapped encoder through it.
        self.model = loss.model
        # Kept in `loss`: sentence-transformers follows it to list the composed losses in the model card.
        self.loss = loss
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        self._last_parts: dict[str, Tensor] = {}
        self._parameter_gradients: list[tuple[nn.Parameter, Tensor]] = []

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """Step 2: ``loss`` over the whole batch from the per-mini-batch embeddings ``reps`` (``[column][mini
        batch]``, each ``[b, d]``); with ``with_backward``, the gradients of the embeddings (left in ``.grad``, where
        the mixin reads them) and of the loss's parameters (kept for the outer backward)."""
        embeddings = [torch.cat(column) for column in reps]  # each [B, d]
        result = self.loss.compute_loss_from_embeddings(embeddings, labels)
        parts = dict(result) if isinstance(result, dict) else {"loss": result}
        total = torch.stack(list(parts.values())).sum()
        self._last_parts = {name: value.detach() for name, value in parts.items()}
        if with_backward:
            leaves = [rep for column in reps for rep in column]
            # The loss's own (the pair head); the encoder's get theirs in step 3.
            encoder = {id(parameter) for parameter in self.model.parameters()}
            parameters = [p for p in self.loss.parameters() if p.requires_grad and id(p) not in encoder]
            gradients = torch.autograd.grad(total, leaves + parameters, allow_unused=True)
            for leaf, gradient in zip(leaves, gradients, strict=False):
                leaf.grad = gradient
            self._parameter_gradients = [
                (parameter, gradient)
                for parameter, gradient in zip(parameters, gradients[len(leaves) :], strict=True)
                if gradient is not None
            ]
        return total.detach()

    def forward(
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None
    ) -> Tensor | dict[str, Tensor]:
        sentence_features = list(sentence_features)
        if labels is None and isinstance(self.loss, InBatchLoss):
            labels = label_ids_from_texts(sentence_features, self.loss.gathers_across_devices())
        total = self.forward_cached(sentence_features, labels)
        parts = self._last_parts
        if not total.requires_grad:
            return LossParts(parts) if len(parts) > 1 else total
        total.register_hook(partial(add_parameter_gradients, gradients=self._parameter_gradients))
        if len(parts) == 1:
            return total
        # The trainer sums the parts and back-propagates the sum: the first part carries the hook (its value
        # unchanged, gradient 1), the others are values to log.
        first, *rest = parts
        return LossParts({first: parts[first] + (total - total.detach()), **{name: parts[name] for name in rest}})

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss": describe_loss(self.loss),
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
        }

    @property
    def citation(self) -> str:
        return """
@misc{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    year={2021},
    eprint={2101.06983},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""
