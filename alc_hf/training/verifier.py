"""Training the cross-encoder verifier: its training pairs and the training itself (the model, its loading and its
probabilities are :mod:`alc_hf.models.verifier`).

The bi-encoder retrieves each query's top-ranked label, and a threshold on its cosine decides whether the match is
accepted automatically. A cross-encoder reads the (query, label) texts together, so it can see what a cosine of two
separate embeddings misses (a model number one digit off, another capacity); used as the accept score it raises
coverage at the required precision. It is trained on the pairs it will face: the data's positives, its labelled
negatives, and the bi-encoder's own top-ranked wrong labels (see :func:`verifier_pairs`).

Training is sentence-transformers' ``CrossEncoderTrainer`` with ``BinaryCrossEntropyLoss``, so it runs under
``accelerate launch`` / ``torchrun`` like any trainer. See docs/verifier.md.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.cross_encoder import (
    CrossEncoder,
    CrossEncoderTrainer,
    CrossEncoderTrainingArguments,
)
from sentence_transformers.cross_encoder.evaluation import CrossEncoderClassificationEvaluator
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
from transformers import EarlyStoppingCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from alc_hf.core.query_labels import QueryLabelData, check_int, pair_keys
from alc_hf.core.retrieval import LabelIndex
from alc_hf.models.encoder import DEFAULT_MODEL, embed_texts
from alc_hf.models.verifier import DEFAULT_MAX_LENGTH, initial_verifier

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ("query", "label", "score")
# A pilot on a product-matching set: plain BCE at lr 5e-5 for 2 epochs learned only the base rate (loss 0.43 -> 0.31
# with 11% positives); lr 1e-4, positives weighted 4x and 5 epochs learned (P@1 and coverage above the bi-encoder's).
DEFAULT_EPOCHS = 5
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_POS_WEIGHT = 4.0
DEFAULT_BATCH_SIZE = 32
DEFAULT_NUM_MINED = 3
# With pairs to select on, the most epochs a verifier trains, and how many without a better F1 on them it waits.
DEFAULT_MAX_EPOCHS = 10
DEFAULT_PATIENCE = 2
SELECTION_METRIC = "eval_selection_f1"
SELECTION_FILE = "verifier_selection.json"
# train_verifier warns when more of its pairs than this are cut at max_length.
TRUNCATION_WARNING_SHARE = 0.01


def verifier_pairs(
    data: QueryLabelData,
    bi_encoder: SentenceTransformer | None = None,
    num_mined: int = DEFAULT_NUM_MINED,
    seed: int = 0,
    batch_size: int = 64,
    show_progress_bar: bool = False,
    max_pairs: int | None = None,
    both_orders: bool = False,
) -> Dataset:
    """The verifier's training pairs: columns ``query``, ``label`` (texts) and ``score`` (1.0 or 0.0).

    * every (query, positive label) pair scores 1;
    * every labelled negative (``data.negatives``, e.g. the ``label == 0`` rows of product tables) scores 0;
    * with a ``bi_encoder`` and ``num_mined`` > 0, each query's ``num_mined`` best-ranked labels that are neither
      its positives nor in ``data.filter_pairs`` score 0 (:func:`mined_negative_pairs`): the wrong candidates the
      verifier faces at accept time. A mined label that is already a labelled negative is kept once.

    The verifier sees texts only, so pairs are deduplicated on the (query text, label text): a text pair that is
    both a positive and a negative (a label listed twice under one text, one copy positive and one not) is kept as
    the positive, and the number of such negatives dropped is logged. Rows are shuffled with ``seed``; the result
    is the same for the same data, bi-encoder and seed. ``max_pairs`` keeps the first pairs of that shuffle (a
    random subset, for a quick run). ``both_orders`` then adds each pair once more with its texts swapped (the
    label as ``query``), right after it: a match is a match whichever record comes first.

    Raises:
        ValueError: ``num_mined`` below 0, ``max_pairs`` below 1, or data without any (query, positive) pair.
    """
    check_int(num_mined, "num_mined", minimum=0)
    if max_pairs is not None:
        check_int(max_pairs, "max_pairs", minimum=1)
    if data.positives.ids.size == 0:
        raise ValueError(f"{data.source}: no (query, positive) pair to train a verifier on")
    parts = [(_positive_pairs(data), 1.0)]
    if data.negatives is not None:
        parts.append((np.stack([data.negatives.row_of_each_id(), data.negatives.ids], axis=1), 0.0))
    if bi_encoder is not None and num_mined:
        parts.append((mined_negative_pairs(data, bi_encoder, num_mined, batch_size, show_progress_bar), 0.0))
    pairs = np.concatenate([part for part, _ in parts])
    scores = np.concatenate([np.full(len(part), score, dtype=np.float32) for part, score in parts])

    text_pairs = pair_keys(_text_ids(data.queries)[pairs[:, 0]], _text_ids(data.labels)[pairs[:, 1]], data.num_labels)
    # Positives come first, and np.unique keeps the first row of each text pair: the positive where both exist.
    _, kept = np.unique(text_pairs, return_index=True)
    conflicting = int(np.isin(text_pairs[scores == 0.0], text_pairs[scores == 1.0]).sum())
    if conflicting:
        logger.warning(
            "%s: %d negative pair(s) have the same query and label texts as a positive and were dropped",
            data.source,
            conflicting,
        )
    kept = kept[np.random.default_rng(seed).permutation(kept.size)][:max_pairs]
    logger.info("%s: %d verifier pairs, %d positive", data.source, kept.size, int((scores[kept] == 1.0).sum()))
    queries = np.asarray(data.queries, dtype=object)[pairs[kept, 0]]
    labels = np.asarray(data.labels, dtype=object)[pairs[kept, 1]]
    scores = scores[kept]
    if both_orders:
        queries, labels = np.stack([queries, labels], axis=1).ravel(), np.stack([labels, queries], axis=1).ravel()
        scores = np.repeat(scores, 2)
    return Dataset(
        pa.table(
            {
                "query": pa.array(queries, type=pa.string()),
                "label": pa.array(labels, type=pa.string()),
                "score": pa.array(scores, type=pa.float32()),
            }
        )
    )


def mined_negative_pairs(
    data: QueryLabelData,
    bi_encoder: SentenceTransformer,
    num_mined: int,
    batch_size: int = 64,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """``[m, 2]`` (query, label) pairs: each query's ``num_mined`` labels ranked best by ``bi_encoder`` (cosine of
    ``encode_query`` and ``encode_document`` embeddings, exact search), its positives and filter pairs left out.
    Fewer where the corpus has fewer labels left; near-ties at the last place are kept in an unspecified order (see
    :class:`~alc_hf.core.retrieval.LabelIndex`).

    sentence-transformers' ``mine_hard_negatives`` is not used: it identifies a query and a label by their text (it
    deduplicates both), so it cannot keep the filter pairs out, and it merges distinct queries that share a text.
    """
    label_embeddings = embed_texts(bi_encoder.encode_document, data.labels, batch_size, show_progress_bar)
    query_embeddings = embed_texts(bi_encoder.encode_query, data.queries, batch_size, show_progress_bar)
    excluded = np.concatenate([data.filter_pairs, _positive_pairs(data)])
    top = LabelIndex(label_embeddings).search(query_embeddings, num_mined, filter_pairs=excluded)
    rows, columns = np.nonzero(top.ids >= 0)
    return np.stack([rows, top.ids[rows, columns]], axis=1).astype(np.int64)


def train_verifier(
    pairs: Dataset,
    model: str | Path | CrossEncoder = DEFAULT_MODEL,
    output_dir: str | Path = "outputs/verifier",
    *,
    epochs: float = DEFAULT_EPOCHS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pos_weight: float | str = DEFAULT_POS_WEIGHT,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int = 0,
    resume_from_checkpoint: str | Path | None = None,
    selection_pairs: Dataset | None = None,
    patience: int = DEFAULT_PATIENCE,
    **training_args: Any,
) -> CrossEncoder:
    """Train a verifier on ``pairs`` (from :func:`verifier_pairs`) and save it to ``output_dir``.

    ``model`` is what :func:`initial_verifier` takes (a name or folder, loaded and checked here with ``max_length``
    and ``seed``) or a cross-encoder it returned earlier (e.g. checked before a longer job started). The loss is
    binary cross-entropy on the logit with positives weighted by ``pos_weight`` (a number, or ``"balanced"`` for the
    sum of negative over positive scores, the inverse of the class ratio). ``predict`` of the returned model (and of
    the saved one) gives probabilities (a sigmoid).

    With ``selection_pairs`` (labelled pairs of a validation split, e.g. ``verifier_pairs(valid_data)``), the
    verifier is chosen on them rather than taken after a fixed number of epochs: after each epoch its pairwise F1
    there (at its best threshold, sentence-transformers' ``CrossEncoderClassificationEvaluator``) is measured, a
    checkpoint kept, training stops once ``patience`` epochs in a row bring no better F1 (``epochs`` is then the
    most it trains), and the best epoch's model is the one returned and saved (the checkpoints are then removed).
    The F1 of each epoch and the epoch chosen are logged and written to ``output_dir/verifier_selection.json``.

    Further keyword arguments go to ``CrossEncoderTrainingArguments`` (``max_steps``, ``logging_steps``,
    ``save_strategy``, ``warmup_steps``, ...); checkpoints are off unless ``save_strategy`` or ``selection_pairs``
    say otherwise. With checkpoints on, ``resume_from_checkpoint`` (a ``checkpoint-N`` folder of an earlier call
    with the same pairs and arguments) continues that run where it stopped.

    Raises:
        ValueError: bad pairs, selection pairs or ``pos_weight`` (see :func:`resolve_pos_weight`), ``patience``
            below 1, ``max_length`` below 1, or a model that cannot be a verifier (see :func:`check_verifier`); all
            before training starts.
    """
    pos_weight_value = resolve_pos_weight(pairs, pos_weight)
    selection: dict[str, Any] = {}
    if selection_pairs is not None:
        selection = _selection_arguments(selection_pairs, check_int(patience, "patience"), batch_size)
    if not isinstance(model, CrossEncoder):
        model = initial_verifier(model, max_length, seed)
    logger.info("training a verifier on %d pairs, positive-class weight %.3g", len(pairs), pos_weight_value)
    truncated = truncated_pair_share(model, pairs)
    if truncated > TRUNCATION_WARNING_SHARE:
        # The end of the longer record goes first, and there the model numbers that tell variants apart often are.
        logger.warning(
            "%.1f%% of the %d training pairs are longer than max_length %d tokens and are cut: pass a larger "
            "max_length",
            100 * truncated,
            len(pairs),
            model.max_seq_length,
        )

    args = CrossEncoderTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        seed=seed,
        # Every parameter of a cross-encoder takes part in every step, and with transformers' default
        # find_unused_parameters=True DDP fails in sentence-transformers 6.2 ("classifier.bias ... marked as ready
        # twice", seen with two CPU processes).
        **{
            "save_strategy": "no",
            "ddp_find_unused_parameters": False,
            **selection.pop("arguments", {}),
            **training_args,
        },
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        # The trainer keeps the target under the key "label" (and a text column of that name would overwrite it),
        # so the label texts travel under another name and the score column is the target.
        train_dataset=pairs.select_columns(list(PAIR_COLUMNS)).rename_column("label", "label_text"),
        loss=BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(pos_weight_value)),
        **selection,
    )
    trainer.train(resume_from_checkpoint=None if resume_from_checkpoint is None else str(resume_from_checkpoint))
    trainer.save_model(str(output_dir))
    if selection_pairs is not None:
        # The epochs' checkpoints served the choice (and a resumed run); the chosen model is saved above.
        for checkpoint in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
            shutil.rmtree(checkpoint)
        per_epoch = [entry[SELECTION_METRIC] for entry in trainer.state.log_history if SELECTION_METRIC in entry]
        record = {
            "metric": "pairwise F1 on the selection pairs at its best threshold",
            "selection_pairs": len(selection_pairs),
            "f1_per_epoch": per_epoch,
            "best_epoch": per_epoch.index(max(per_epoch)) + 1,
            "patience": patience,
        }
        (Path(output_dir) / SELECTION_FILE).write_text(json.dumps(record, indent=1) + "\n")
        logger.info(
            "verifier chosen at epoch %d of %d: F1 per epoch %s", record["best_epoch"], len(per_epoch), per_epoch
        )
    return model


def truncated_pair_share(model: CrossEncoder, pairs: Dataset) -> float:
    """The share of ``pairs`` (columns ``query``, ``label``) that the verifier cuts: encoded together as it reads
    them, special tokens included, longer than its ``max_length``."""
    columns = pairs.with_format(None)
    if len(columns) == 0:
        return 0.0
    # verbose=False: the tokenizer's own warning about long sequences would say, once, what this share measures.
    encoded = model.tokenizer(list(columns["query"]), list(columns["label"]), add_special_tokens=True, verbose=False)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    return float(np.mean(lengths > model.max_seq_length))


def _selection_arguments(selection_pairs: Dataset, patience: int, batch_size: int) -> dict[str, Any]:
    """What ``CrossEncoderTrainer`` and its arguments need to choose the verifier on ``selection_pairs``: an
    evaluator named ``selection`` (its F1 is :data:`SELECTION_METRIC`), an evaluation and a checkpoint each epoch,
    the best one loaded at the end, and early stopping."""
    resolve_pos_weight(selection_pairs, 1.0)  # the same columns as pairs, both classes present
    columns = selection_pairs.with_format(None)
    if any(score not in (0.0, 1.0) for score in columns["score"]):
        raise ValueError("selection_pairs must score each pair 1 (a match) or 0 (not one): its F1 needs labels")
    evaluator = CrossEncoderClassificationEvaluator(
        [list(pair) for pair in zip(columns["query"], columns["label"], strict=True)],
        [int(score) for score in columns["score"]],
        name="selection",
        batch_size=batch_size,
        write_csv=False,
    )
    return {
        "evaluator": evaluator,
        "callbacks": [EarlyStoppingCallback(early_stopping_patience=patience)],
        "arguments": {
            "eval_strategy": "epoch",
            "save_strategy": "epoch",
            "load_best_model_at_end": True,
            "metric_for_best_model": SELECTION_METRIC,
            "greater_is_better": True,
            # The best checkpoint is always kept besides the newest.
            "save_total_limit": 1,
        },
    }


def _positive_pairs(data: QueryLabelData) -> np.ndarray:
    return np.stack([data.positives.row_of_each_id(), data.positives.ids], axis=1)


def _text_ids(texts: Sequence[str]) -> np.ndarray:
    """For each text, the index of its first occurrence: equal texts get equal ids."""
    first: dict[str, int] = {}
    return np.fromiter((first.setdefault(text, i) for i, text in enumerate(texts)), dtype=np.int64, count=len(texts))


def resolve_pos_weight(pairs: Dataset, pos_weight: float | str) -> float:
    """The weight of the positive class in the loss: ``pos_weight`` itself, or for ``"balanced"`` the sum of the
    negative over the positive scores (negatives per positive with 0/1 scores). Checks the pairs first.

    Raises:
        ValueError: pairs without exactly the columns query, label and score, no pair, a score outside [0, 1], no
            positive or no negative score, or a ``pos_weight`` that is neither a positive number nor "balanced".
    """
    if sorted(pairs.column_names) != sorted(PAIR_COLUMNS):
        raise ValueError(
            f"pairs must have exactly the columns {', '.join(PAIR_COLUMNS)} (as verifier_pairs gives), "
            f"got {', '.join(pairs.column_names) or 'none'}"
        )
    if len(pairs) == 0:
        raise ValueError("pairs is empty: no (query, label) pair to train on")
    scores = np.asarray(pairs.with_format("numpy")["score"], dtype=np.float64)
    if not (np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()):
        raise ValueError("every score must be a number in [0, 1] (1 for a match, 0 for a non-match)")
    positive, negative = float(scores.sum()), float((1 - scores).sum())
    if positive == 0 or negative == 0:
        raise ValueError(f"pairs has no {'positive' if positive == 0 else 'negative'} score: a verifier needs both")
    if pos_weight == "balanced":
        return negative / positive
    if (
        isinstance(pos_weight, bool)
        or not isinstance(pos_weight, int | float)
        or not math.isfinite(pos_weight)
        or pos_weight <= 0
    ):
        raise ValueError(f"pos_weight must be a positive number or 'balanced', got {pos_weight!r}")
    return float(pos_weight)
