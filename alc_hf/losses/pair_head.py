from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers.sentence_transformer.model import SentenceTransformer
from torch import Tensor, nn

from alc_hf.losses.functional import pair_representation

CONFIG_NAME = "pair_head_config.json"
WEIGHTS_NAME = "pair_head.safetensors"


class PairHead(nn.Module):
    """The ALC pair head g: R^{4d} -> R, scoring a (query, label) pair from Γ(q, l) = [q, l, |q - l|, q ⊙ l].

    ``Linear(4d, h) -> GELU -> Linear(h, 1)`` with h = d by default, or with ``hidden_dim=0`` a single
    ``Linear(4d, 1)`` (sentence-transformers' SoftmaxLoss head). Trained by :class:`~alc_hf.ALCLoss`; not needed for
    retrieval, but after training it can verify a top-1 candidate (accept/reject) from the two L2-normalised
    embeddings.

    Example:
        ::

            loss = ALCLoss(model)
            ...  # train
            loss.pair_head.save_pretrained("output/pair_head")
            head = PairHead.from_pretrained("output/pair_head")
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

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"embedding_dim": self.embedding_dim, "hidden_dim": self.hidden_dim}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> PairHead:
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"no pair head in {directory}: {CONFIG_NAME} is missing")
        config = json.loads(config_path.read_text())
        head = cls(int(config["embedding_dim"]), int(config["hidden_dim"]))
        head.load_state_dict(load_file(directory / WEIGHTS_NAME))
        return head


def saved_pair_head(model_name_or_path: str | Path) -> PairHead | None:
    """The pair head saved beside a model (``<model folder>/pair_head``, as the recipe saves it), or None when the
    folder has none (a model trained without ALC, or a Hub id)."""
    directory = Path(model_name_or_path) / "pair_head"
    return PairHead.from_pretrained(directory) if (directory / CONFIG_NAME).is_file() else None
