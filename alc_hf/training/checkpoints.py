"""The loss's own parameters (the ALC pair head) in every checkpoint: the Trainer saves the encoder and the
optimizer but not the loss module, so without them a resumed run would restart the pair head from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

LOSS_STATE_FILE = "loss_state.safetensors"


def loss_own_state(loss: nn.Module, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``loss`` that are not the encoder's: the ALC pair head's parameters."""
    encoder_tensors = {id(tensor) for tensor in model.state_dict(keep_vars=True).values()}
    return {
        name: tensor.detach().contiguous()
        for name, tensor in loss.state_dict(keep_vars=True).items()
        if id(tensor) not in encoder_tensors
    }


class LossCheckpointCallback(TrainerCallback):
    """Saves the loss's own parameters (the ALC pair head) into every checkpoint: the Trainer checkpoints the
    encoder and the optimizer but not the loss module, so without this a resumed run restarts the pair head from
    scratch. :func:`load_loss_checkpoint` puts them back."""

    def __init__(self, loss: nn.Module, model: nn.Module) -> None:
        self.loss = loss
        self.model = model

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        own_state = loss_own_state(self.loss, self.model)
        if state.is_world_process_zero and own_state:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            save_file({name: tensor.cpu() for name, tensor in own_state.items()}, str(checkpoint / LOSS_STATE_FILE))


def load_loss_checkpoint(loss: nn.Module, model: nn.Module, checkpoint: str | Path) -> None:
    """Restore what :class:`LossCheckpointCallback` saved in ``checkpoint`` (a ``checkpoint-N`` folder)."""
    expected = loss_own_state(loss, model)
    if not expected:
        return
    path = Path(checkpoint) / LOSS_STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {checkpoint} holds no state for the loss's own parameters "
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
