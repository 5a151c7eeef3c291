"""What evaluation makes of a split: its evaluation view (:class:`EvaluationView`: the queries, the corpus they are
searched in, the relevant labels, the pairs filtered out, the candidates of a block view), and the decisions made
about product tables (ground truth over every split, the identical-text filter, the catalog view). Reading a
dataset in any format starts in :mod:`alc_hf.data.loading`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from alc_hf.core.query_labels import QueryLabelData, RaggedIds
from alc_hf.data.formats import normalise_text
from alc_hf.data.tables import TABLE_SPLITS, read_product_tables

VIEWS = ("corpus", "labelled")


@dataclass
class EvaluationView:
    """What the coverage evaluation needs from a split.

    Attributes:
        queries: query texts.
        corpus: label texts every query is searched against (the catalog).
        relevant: per query, the indices into ``corpus`` of its positives (may be empty: an open-set query
            whose correct answer is to accept nothing).
        filter_pairs: ``[n, 2]`` (query, corpus index) pairs removed from the predictions before scoring.
        candidates: per query, the only corpus indices it may be matched to (a blocking step's output, e.g. the
            labelled pairs of the WDC block view), or None to search the whole corpus.
    """

    queries: list[str]
    corpus: list[str]
    relevant: RaggedIds
    filter_pairs: np.ndarray
    candidates: RaggedIds | None = None


def evaluation_view(data: QueryLabelData, candidates: str = "corpus") -> EvaluationView:
    """The evaluation view of a split: ``candidates="corpus"`` ranks each query against every label (catalog
    view); ``"labelled"`` ranks it only against its labelled positives and negatives (block view)."""
    if candidates not in VIEWS:
        raise ValueError(f"candidates must be 'corpus' or 'labelled', got {candidates!r}")
    if data.num_queries == 0:
        raise ValueError(f"{data.source}: the split has no query")
    candidate_lists = None
    if candidates == "labelled":
        if data.negatives is None:
            raise ValueError(f"{data.source}: a 'labelled' view needs labelled negatives, and this data has none")
        candidate_lists = RaggedIds.from_lists(
            [np.concatenate([data.positives[q], data.negatives[q]]).tolist() for q in range(data.num_queries)]
        )
    return EvaluationView(
        queries=list(data.queries),
        corpus=list(data.labels),
        relevant=data.positives,
        filter_pairs=data.filter_pairs,
        candidates=candidate_lists,
    )


# ----------------------------------------------------------------------------------------------------------------
# product tables


def identical_text_pairs(data: QueryLabelData) -> np.ndarray:
    """``[n, 2]`` (query, label) pairs whose normalised texts are equal (and not empty), unless the label is a
    positive of the query: the unlabelled re-listings of a product in a catalog, which must not count as errors."""
    by_key: dict[str, list[int]] = {}
    for index, label_text in enumerate(data.labels):
        key = normalise_text(label_text)
        if key:
            by_key.setdefault(key, []).append(index)
    pairs: list[tuple[int, int]] = []
    for q, query_text in enumerate(data.queries):
        same = by_key.get(normalise_text(query_text))
        if same:
            own = set(data.positives[q].tolist())
            pairs.extend((q, label) for label in same if label not in own)
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def table_split(
    data_dir: str | Path,
    split: str,
    text_fields: Sequence[str] = ("brand", "title"),
    ground_truth: str = "split",
    skip_bad_rows: bool = False,
) -> QueryLabelData:
    """A split of product tables as the project evaluates it: :func:`~alc_hf.data.tables.read_product_tables`, with
    the identical-text pairs as filter pairs (computed after the ground truth).

    ``ground_truth="all_splits"`` adds to each query its positives from the other splits' ``label == 1`` rows
    (train, valid, test order), matched by ``ltable_id``."""
    if ground_truth not in ("split", "all_splits"):
        raise ValueError(f"ground_truth must be one of 'split', 'all_splits'; got {ground_truth!r}")
    data = read_product_tables(data_dir, split, text_fields, skip_bad_rows)
    if ground_truth == "all_splits":
        positives = {query_id: data.positives[q].tolist() for q, query_id in enumerate(data.query_ids)}
        for other_split in TABLE_SPLITS:
            if other_split == split:
                continue
            other = read_product_tables(data_dir, other_split, text_fields, skip_bad_rows)
            for q, query_id in enumerate(other.query_ids):
                own = positives.get(query_id)
                if own is not None:
                    own += [label for label in other.positives[q].tolist() if label not in own]
        data = replace(data, positives=RaggedIds.from_lists([positives[q] for q in data.query_ids]))
    return replace(data, filter_pairs=identical_text_pairs(data))


def wdc_catalog_split(
    data_dir: str | Path, split: str, text_fields: Sequence[str] = ("brand", "title")
) -> QueryLabelData:
    """A WDC split as its catalog view reads it (``../shared/data/README.md``): the queries that have a match in the
    split, each with its positives over every split as ground truth.

    tableB holds offers of a query's product that only other splits label as matches; counting them as errors
    would understate precision further than the unlabelled re-listed offers already do. Queries whose only matches
    come from other splits are left out: the split's blocking says they have none."""
    in_split = read_product_tables(data_dir, split, text_fields)
    data = table_split(data_dir, split, text_fields, ground_truth="all_splits")
    return data.select_queries(
        in_split.positives.lengths() > 0, source=f"{data.source} (catalog view: queries with a match in {split})"
    )
