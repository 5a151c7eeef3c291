"""Training a LoRA adapter instead of the whole encoder, and the check that the installed stack can."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Sequence

from packaging.version import Version
from sentence_transformers import SentenceTransformer

from alc_hf.core.program import SetupError


class LoraUnavailableError(SetupError):
    """LoRA was asked for but the installed transformers and PEFT cannot train an adapter together."""


def check_lora_available() -> None:
    """Fail before any data is read or any model trained when the installed transformers refuses the installed PEFT
    (``add_adapter`` would raise only once training is set up), naming both versions and what to install."""
    import transformers
    from transformers.integrations import peft as transformers_peft

    if importlib.util.find_spec("peft") is None:
        raise LoraUnavailableError("LoRA (--lora_r) needs PEFT: `pip install peft`.")
    installed = importlib.metadata.version("peft")
    required = transformers_peft.MIN_PEFT_VERSION
    if Version(installed) < Version(required):
        raise LoraUnavailableError(
            f"LoRA (--lora_r) cannot work with transformers {transformers.__version__} and PEFT {installed}: this "
            f"transformers needs PEFT >= {required}. Install `pip install 'peft>={required}'` if it is published, or "
            "the tested pair from constraints.txt (`pip install --constraint constraints.txt transformers peft`)."
        )


def add_lora_adapter(
    model: SentenceTransformer,
    base_model: str,
    r: int,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: Sequence[str] | None = None,
) -> None:
    """Train a LoRA adapter instead of the whole encoder; the model card says it is an adapter of ``base_model``."""
    check_lora_available()
    from peft import LoraConfig, TaskType

    if r < 1:
        raise ValueError(f"lora_r must be >= 1, got {r}")
    model.add_adapter(
        LoraConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=list(target_modules) if target_modules else None,
        )
    )
    card = model.model_card_data
    card.model_name = f"LoRA adapter (r={r}) for {base_model}, trained with alc_hf"
    card.tags = [*card.tags, "peft", "lora", "alc_hf"]
