"""The ALC pair head, saved and loaded with ``huggingface_hub``'s ``PyTorchModelHubMixin`` (safetensors).

Inside a model folder the head lives in its own ``pair_head/`` subfolder: the mixin's ``config.json`` and
``model.safetensors`` would otherwise overwrite the bi-encoder's files of the same names. ``PairHead.from_pretrained``
takes the model folder or its Hub id and finds the head there, or a folder that holds a head alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors.torch import load_model
from sentence_transformers.sentence_transformer.model import SentenceTransformer
from torch import Tensor, nn

# The subfolder of a model folder (local or on the Hub) that holds its pair head.
PAIR_HEAD_FOLDER = "pair_head"
# The files the mixin writes: the head's own config and weights, inside PAIR_HEAD_FOLDER next to a model.
CONFIG_NAME = constants.CONFIG_NAME
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE
CARD = """---
tags:
- alc_hf
- pair-head
---

# ALC pair head

Scores a (query, label) pair from the two L2-normalised embeddings of the bi-encoder it was trained with
(`{shape}` on `[q, l, |q - l|, q * l]`), so that a top-1 candidate can be accepted or rejected. Load it with

```python
from alc_hf import PairHead
head = PairHead.from_pretrained("<the model folder or its Hub id>")
```
"""


def pair_representation(a: Tensor, b: Tensor) -> Tensor:
    """``[a, b, |a - b|, a * b]`` along the last dimension (4d features), as in sentence-transformers' SoftmaxLoss."""
    if a.shape != b.shape:
        raise ValueError(f"pair_representation needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return torch.cat([a, b, (a - b).abs(), a * b], dim=-1)


class PairHead(nn.Module, PyTorchModelHubMixin, tags=["alc_hf"]):
    """The ALC pair head g: R^{4d} -> R, scoring a (query, label) pair from Γ(q, l) = [q, l, |q - l|, q ⊙ l].

    ``Linear(4d, h) -> GELU -> Linear(h, 1)`` with h = d by default, or with ``hidden_dim=0`` a single
    ``Linear(4d, 1)`` (sentence-transformers' SoftmaxLoss head). Trained by :class:`~alc_hf.ALCLoss`; not needed for
    retrieval, but after training it can verify a top-1 candidate (accept/reject) from the two L2-normalised
    embeddings.

    Example:
        ::

            loss = ALCLoss(model)
            ...  # train
            loss.save_pair_head("output/final")  # beside the model saved in output/final: output/final/pair_head/
            head = PairHead.from_pretrained("output/final")  # or the Hub id the folder was pushed to
            probabilities = head.score_texts(model, ["sony wh-1000xm5 black"], ["Sony WH-1000XM5 Headphones"])
    """

    def __init__(self, embedding_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        if hidden_dim is not None and hidden_dim < 0:
            raise ValueError(f"hidden_dim must be >= 0 (0: a single linear layer), got {hidden_dim}")
        self.embedding_dim = embedding_dim
        self.hidden_dim = embedding_dim if hidden_dim is None else hidden_dim
        if self.hidden_dim == 0:
            self.layers = nn.Sequential(nn.Linear(4 * embedding_dim, 1))
        else:
            self.layers = nn.Sequential(
                nn.Linear(4 * embedding_dim, self.hidden_dim), nn.GELU(), nn.Linear(self.hidden_dim, 1)
            )

    def describe(self) -> str:
        """The head's shape, for model cards: ``Linear(4d, h) -> GELU -> Linear(h, 1)`` or ``Linear(4d, 1)``."""
        if self.hidden_dim == 0:
            return f"Linear({4 * self.embedding_dim}, 1)"
        return f"Linear({4 * self.embedding_dim}, {self.hidden_dim}) -> GELU -> Linear({self.hidden_dim}, 1)"

    def forward(self, queries: Tensor, labels: Tensor) -> Tensor:
        """Logits ``[...]`` for pairs of L2-normalised embeddings ``[..., d]`` (any leading shape)."""
        return self.layers(pair_representation(queries, labels)).squeeze(-1)

    @torch.no_grad()
    def score_texts(
        self, model: SentenceTransformer, queries: list[str], labels: list[str], batch_size: int = 64
    ) -> Tensor:
        """Probability that each (query, label) pair matches, embedding both sides with ``model``."""
        if len(queries) != len(labels):
            raise ValueError(f"score_texts needs as many queries as labels, got {len(queries)} and {len(labels)}")
        encode = dict(batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
        query_embeddings = model.encode(queries, **encode)
        label_embeddings = model.encode(labels, **encode)
        parameter = next(self.parameters())
        logits = self(query_embeddings.to(parameter), label_embeddings.to(parameter))
        return torch.sigmoid(logits)

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's weights (``model.safetensors``) and a card saying what the head is and how to load it (the
        mixin writes ``config.json`` itself)."""
        super()._save_pretrained(save_directory)
        (save_directory / "README.md").write_text(CARD.format(shape=self.describe()))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        **model_kwargs: object,
    ) -> PairHead:
        """The head saved in a model folder (its ``pair_head/`` subfolder, as :meth:`ALCLoss.save_pair_head` and
        the recipe save it) or in a folder of its own, each a local path or a Hub repository id.

        Raises FileNotFoundError when there is no head there."""
        folder = pair_head_folder(
            pretrained_model_name_or_path,
            force_download=force_download,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            revision=revision,
        )
        if folder is None:
            raise FileNotFoundError(
                f"no pair head in {pretrained_model_name_or_path}: expected {PAIR_HEAD_FOLDER}/{CONFIG_NAME} (a model "
                f"folder saved with its head) or a head's own {CONFIG_NAME} with 'embedding_dim'"
            )
        return super().from_pretrained(folder, **model_kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: object,
    ) -> PairHead:
        """Build the head from its config and load its weights. ``model_id`` is always a local folder here
        (:meth:`from_pretrained` fetched the head's files first), so the Hub options are unused. Strict by default,
        unlike the mixin: a missing or unexpected tensor is an error, not a silently random layer."""
        del revision, cache_dir, force_download, local_files_only, token
        head = cls(**model_kwargs)
        load_model(head, str(Path(model_id) / WEIGHTS_NAME), strict=strict, device=map_location)
        return head.eval()


def is_pair_head_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a head's own config (a model's ``config.json`` has no ``embedding_dim``)."""
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON: {error}") from error
    return isinstance(config, dict) and "embedding_dim" in config


def pair_head_folder(model_name_or_path: str | Path, **hub_options: Any) -> Path | None:
    """The local folder holding the head of a model folder or Hub repository: its ``pair_head/`` subfolder, else
    the folder itself when it holds a head alone; None when it holds none. From the Hub (``hub_options`` go to
    ``snapshot_download``: revision, token, cache_dir, ...) only the head's files are downloaded, never the
    encoder's weights; a repository that cannot be fetched (offline and not cached, no such repository) raises
    FileNotFoundError."""
    local = Path(model_name_or_path)
    if local.is_dir():
        return next((folder for folder in (local / PAIR_HEAD_FOLDER, local) if is_pair_head_folder(folder)), None)
    hub = {"repo_id": str(model_name_or_path), **hub_options}
    try:
        snapshot = Path(snapshot_download(allow_patterns=[f"{PAIR_HEAD_FOLDER}/*", CONFIG_NAME], **hub))
    except HFValidationError as error:
        raise FileNotFoundError(
            f"{model_name_or_path} is neither a local folder nor a Hub repository id ({error})"
        ) from error
    except (LocalEntryNotFoundError, RepositoryNotFoundError) as error:
        raise FileNotFoundError(
            f"cannot fetch the pair head of {model_name_or_path} from the Hugging Face Hub: {error}"
        ) from error
    if is_pair_head_folder(snapshot / PAIR_HEAD_FOLDER):
        return snapshot / PAIR_HEAD_FOLDER
    if not is_pair_head_folder(snapshot):
        return None
    # A repository holding a head alone (``head.push_to_hub(repo_id)``): its weights are at the root.
    return Path(snapshot_download(allow_patterns=[CONFIG_NAME, WEIGHTS_NAME], **hub))


def saved_pair_head(model_name_or_path: str | Path) -> PairHead | None:
    """The pair head saved with a model (``<model folder>/pair_head``, local or on the Hub), or None when the model
    has none (trained without ALC)."""
    folder = pair_head_folder(model_name_or_path)
    return None if folder is None else PairHead.from_pretrained(folder)
