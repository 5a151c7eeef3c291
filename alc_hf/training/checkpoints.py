"""The loss's own state in every checkpoint, and which checkpoint to resume from.

The Trainer saves the encoder and the optimizer but not the loss module, so without this a resumed run would restart
the ALC pair head from scratch. Each ``checkpoint-N`` gets the head in ``pair_head/``, the same layout as the final
model folder (so ``PairHead.from_pretrained(checkpoint)`` and ``alc-hf evaluate checkpoint-N`` find it), and the
loss's other own tensors (the head's warm-up step count) in ``loss_state.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from alc_hf.losses import PairHead
from alc_hf.training.loss_composition import find_alc_loss

LOSS_STATE_FILE = "loss_state.safetensors"
# ``--resume_from_checkpoint last``: the newest checkpoint-N in output_dir.
LAST_CHECKPOINT = "last"


def loss_own_state(loss: nn.Module, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``loss`` that are neither the encoder's nor the pair head's (saved with the mixin)."""
    alc_loss = find_alc_loss(loss)
    elsewhere = {id(tensor) for tensor in model.state_dict(keep_vars=True).values()}
    if alc_loss is not None:
        elsewhere |= {id(tensor) for tensor in alc_loss.pair_head.state_dict(keep_vars=True).values()}
    return {
        name: tensor.detach().contiguous()
        for name, tensor in loss.state_dict(keep_vars=True).items()
        if id(tensor) not in elsewhere
    }


class LossCheckpointCallback(TrainerCallback):
    """Saves the ALC pair head (``pair_head/``) and the loss's other own tensors (``loss_state.safetensors``) into
    every checkpoint; :func:`load_loss_checkpoint` puts them back."""

    def __init__(self, loss: nn.Module, model: nn.Module) -> None:
        self.loss = loss
        self.model = model

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        alc_loss = find_alc_loss(self.loss)
        if alc_loss is not None:
            alc_loss.save_pair_head(checkpoint)
        own_state = loss_own_state(self.loss, self.model)
        if own_state:
            save_file({name: tensor.cpu() for name, tensor in own_state.items()}, str(checkpoint / LOSS_STATE_FILE))


def load_loss_checkpoint(loss: nn.Module, model: nn.Module, checkpoint: str | Path) -> None:
    """Restore what :class:`LossCheckpointCallback` saved in ``checkpoint`` (a ``checkpoint-N`` folder)."""
    alc_loss = find_alc_loss(loss)
    if alc_loss is not None:
        try:
            saved_head = PairHead.from_pretrained(checkpoint)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"{checkpoint} holds no ALC pair head ({error}); was it written by a run with the same loss?"
            ) from error
        live_head = alc_loss.pair_head
        if (saved_head.embedding_dim, saved_head.hidden_dim) != (live_head.embedding_dim, live_head.hidden_dim):
            raise ValueError(
                f"the pair head in {checkpoint} is {saved_head.describe()} but the loss's is {live_head.describe()}: "
                "the loss configuration changed"
            )
        live_head.load_state_dict(saved_head.state_dict())
    expected = loss_own_state(loss, model)
    if not expected:
        return
    path = Path(checkpoint) / LOSS_STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {checkpoint} holds no state for the loss's own tensors "
            f"({', '.join(sorted(expected))}); was it written by a run with the same loss configuration?"
        )
    saved = load_file(str(path))
    if saved.keys() != expected.keys():
        raise ValueError(
            f"{path} holds {sorted(saved)} but the loss has {sorted(expected)}: the loss configuration changed"
        )
    with torch.no_grad():
        for name, tensor in expected.items():
            tensor.copy_(saved[name].to(tensor.device))


def checkpoint_to_resume(resume_from_checkpoint: str, output_dir: str | Path) -> str:
    """The checkpoint folder ``--resume_from_checkpoint`` names: ``last`` is the newest ``checkpoint-N`` in
    ``output_dir``. Raises FileNotFoundError, before any work, when there is none or the folder does not exist."""
    if resume_from_checkpoint == LAST_CHECKPOINT:
        last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
        if last is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint last: no {PREFIX_CHECKPOINT_DIR}-N folder in {output_dir}; checkpoints "
                "are written with --save_strategy steps --save_steps N (the recipe's default is --save_strategy no)"
            )
        return last
    if not Path(resume_from_checkpoint).is_dir():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume_from_checkpoint}: no such checkpoint folder (give a "
            f"{PREFIX_CHECKPOINT_DIR}-N folder, or `last` for the newest in --output_dir)"
        )
    return resume_from_checkpoint
