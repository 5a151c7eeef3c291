"""Where reading a dataset starts, whatever its format (built-in catalog, product tables, XMC, BEIR, pairs):
:func:`load_query_label_data` for training, :func:`load_evaluation_views` for the calibration and test views, and
the names of the formats and of their options."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from alc_hf.core.query_labels import QueryLabelData
from alc_hf.data.beir import beir_splits, read_beir
from alc_hf.data.catalog import builtin_catalog
from alc_hf.data.formats import check_choice
from alc_hf.data.pairs import CALIBRATION_SPLITS, pair_sources, read_pairs
from alc_hf.data.views import EvaluationView, evaluation_view, table_split, wdc_catalog_split
from alc_hf.data.xmc import read_xmc

DATA_FORMATS = ("catalog", "wdc", "tables", "xmc", "beir", "pairs")
DATA_FORMAT_HELP = (
    "catalog: the built-in catalog (trn; val -> tst); tables (or wdc): WDC/DeepMatcher product tables, tableA.csv "
    "queries against tableB.csv, train/valid/test.csv pairs (valid -> test); xmc: an Extreme Classification dataset "
    "(trn; its test queries halved at random); beir: corpus.jsonl, queries.jsonl, qrels/<split>.tsv; pairs: a folder "
    "of <split>.csv/.jsonl/.parquet query-label pairs. beir and pairs calibrate on dev/valid/validation when present, "
    "else on a random half of test."
)
DEFAULT_TEXT_FIELDS = ("brand", "title")
PAIR_COLUMNS = ("query_column", "label_column", "query_id_column", "label_id_column", "relevance_column")
# The options of a source besides its folder, by name (the recipe's DataArguments and `alc-hf evaluate` take them).
DATA_OPTION_HELP = {
    "text_fields": f"tables/wdc: the columns joined into each text (default: {' '.join(DEFAULT_TEXT_FIELDS)})",
    "query_column": "pairs: the column of query texts (required); alc-hf match: of --queries (default: text)",
    "label_column": "pairs: the column of label texts (required)",
    "query_id_column": "pairs: the column of query ids (default: a query is its text); alc-hf match: of --queries "
    "(default: id)",
    "label_id_column": "pairs: the column of label ids, shared by all splits (default: a label is its text)",
    "relevance_column": "pairs: a 0/1 column; 0 rows are labelled negatives (default: every row is a positive)",
}
# The view each format is evaluated in by default: product tables are labelled blocks (every candidate verified),
# and so are pairs with a relevance column (see default_view).
DEFAULT_VIEW = {"catalog": "corpus", "wdc": "labelled", "tables": "labelled", "xmc": "corpus", "beir": "corpus"}
TRAIN_SPLIT = {"catalog": "trn", "xmc": "trn"}  # the others call it "train"
CALIBRATION_FRACTION = 0.5  # of the test queries, when a source has no calibration split

Source = str | Path | Mapping[str, Any] | None


def default_view(data_format: str, relevance_column: str | None = None) -> str:
    """``"labelled"`` for product tables and for pairs with a relevance column, ``"corpus"`` otherwise."""
    if data_format == "pairs":
        return "corpus" if relevance_column is None else "labelled"
    return DEFAULT_VIEW[data_format]


def _check_source(data_format: str, source: Source, options: dict[str, Any]) -> None:
    check_choice("data format", data_format, DATA_FORMATS)
    unknown = [name for name in options if name not in DATA_OPTION_HELP]
    if unknown:
        raise TypeError(f"unknown data option(s) {', '.join(unknown)}; expected some of {', '.join(DATA_OPTION_HELP)}")
    given = [name for name, value in options.items() if value is not None]
    applies = {"text_fields": ("wdc", "tables"), **dict.fromkeys(PAIR_COLUMNS, ("pairs",))}
    for name in given:
        if data_format not in applies[name]:
            raise ValueError(f"{name} applies to data format {' or '.join(applies[name])}, not to {data_format!r}")
    if data_format == "catalog":
        if source is not None:
            raise ValueError("the built-in catalog takes no data_dir")
        return
    if source is None:
        raise ValueError(f"data source {data_format!r} needs a data_dir")
    if data_format != "pairs" and not isinstance(source, str | Path):
        raise TypeError(f"data format {data_format!r} reads a folder; got {type(source).__name__}")
    if data_format == "pairs" and (options.get("query_column") is None or options.get("label_column") is None):
        raise ValueError("data format 'pairs' needs query_column and label_column (the columns of the two texts)")


def _read(data_format: str, source: Source, split: str, seed: int, options: dict[str, Any]) -> QueryLabelData:
    if data_format == "catalog":
        return builtin_catalog(seed=seed, split=split)
    if data_format in ("wdc", "tables"):
        return table_split(source, split, options.get("text_fields") or DEFAULT_TEXT_FIELDS)
    if data_format == "xmc":
        return read_xmc(source, split=split)
    if data_format == "beir":
        return read_beir(source, split)
    return read_pairs(source, split, **{name: value for name, value in options.items() if name in PAIR_COLUMNS})


def load_query_label_data(
    source: Source = None, data_format: str = "catalog", split: str | None = None, *, seed: int = 0, **options: Any
) -> QueryLabelData:
    """One split of a source, by default its training split, with its labelled negatives where it has any.

    Args:
        source: the data folder (``--data_dir``), or for ``pairs`` also a ``DatasetDict`` or a mapping from split
            to a file or ``datasets.Dataset``; None for the built-in catalog.
        data_format: one of :data:`DATA_FORMATS` (see :data:`DATA_FORMAT_HELP`).
        split: the split's name in the source (default: ``trn`` for catalog and xmc, ``train`` otherwise).
        seed: the built-in catalog's seed.
        options: ``text_fields`` (tables) and the ``*_column`` names (pairs); see :data:`DATA_OPTION_HELP`.
    """
    _check_source(data_format, source, options)
    return _read(data_format, source, split or TRAIN_SPLIT.get(data_format, "train"), seed, options)


def _halves(data: QueryLabelData, seed: int) -> tuple[QueryLabelData, QueryLabelData]:
    """Disjoint calibration and test parts of a split's queries, chosen at random (``seed``)."""
    in_calibration = np.zeros(data.num_queries, dtype=bool)
    order = np.random.default_rng(seed).permutation(data.num_queries)
    in_calibration[order[: round(CALIBRATION_FRACTION * data.num_queries)]] = True
    return (
        data.select_queries(in_calibration, source=f"{data.source} (calibration part)"),
        data.select_queries(~in_calibration, source=f"{data.source} (test part)"),
    )


def load_evaluation_splits(
    source: Source = None, data_format: str = "catalog", seed: int = 0, catalog_view: bool = False, **options: Any
) -> tuple[QueryLabelData, QueryLabelData]:
    """``(calibration, test)``: the split a threshold is chosen on and the split it is applied to.

    The catalog uses its ``val`` and ``tst`` splits and product tables ``valid.csv`` and ``test.csv`` (with
    ``catalog_view``, as :func:`wdc_catalog_split` reads them). BEIR and pairs sources use ``test`` and the first of
    :data:`~alc_hf.data.pairs.CALIBRATION_SPLITS` they hold. XMC datasets publish no validation split, so their test
    queries are divided at random (``seed``) into disjoint calibration and test halves; so are a BEIR or pairs
    source's without a calibration split."""
    _check_source(data_format, source, options)
    if data_format == "catalog":
        return builtin_catalog(seed=seed, split="val"), builtin_catalog(seed=seed, split="tst")
    if data_format in ("wdc", "tables"):
        read = wdc_catalog_split if catalog_view else table_split
        text_fields = options.get("text_fields") or DEFAULT_TEXT_FIELDS
        return read(source, "valid", text_fields), read(source, "test", text_fields)
    if data_format == "xmc":
        return _halves(read_xmc(source, split="tst"), seed)
    splits = beir_splits(source) if data_format == "beir" else pair_sources(source)[1]
    calibration = next((split for split in CALIBRATION_SPLITS if split in splits), None)
    test = _read(data_format, source, "test", seed, options)
    if calibration is None:
        return _halves(test, seed)
    return _read(data_format, source, calibration, seed, options), test


def load_evaluation_views(
    source: Source = None, data_format: str = "catalog", view: str | None = None, *, seed: int = 0, **options: Any
) -> tuple[EvaluationView, EvaluationView]:
    """``(calibration, test)`` views of a source (see :func:`load_evaluation_splits`; ``source``, ``data_format``
    and ``options`` as for :func:`load_query_label_data`).

    ``view`` is ``"corpus"`` (rank against every label) or ``"labelled"`` (rank only against each query's labelled
    positives and negatives, the block view); by default :func:`default_view`. The corpus view of product tables is
    their catalog view (:func:`wdc_catalog_split`)."""
    check_choice("data format", data_format, DATA_FORMATS)
    view = view or default_view(data_format, options.get("relevance_column"))
    calibration, test = load_evaluation_splits(source, data_format, seed, catalog_view=view == "corpus", **options)
    return evaluation_view(calibration, candidates=view), evaluation_view(test, candidates=view)


def load_evaluation_view(
    source: Source,
    data_format: str,
    split: str,
    view: str | None = None,
    *,
    seed: int = 0,
    **options: Any,
) -> EvaluationView:
    """One named split of a source as an evaluation view (``view`` and the other arguments as for
    :func:`load_evaluation_views`): e.g. the traffic ``alc-hf certify`` draws its sample from. Its labels, where it
    has any, are what a person's labels would be: only a benchmark reads them."""
    check_choice("data format", data_format, DATA_FORMATS)
    view = view or default_view(data_format, options.get("relevance_column"))
    _check_source(data_format, source, options)
    if data_format in ("wdc", "tables") and view == "corpus":
        return evaluation_view(wdc_catalog_split(source, split, options.get("text_fields") or DEFAULT_TEXT_FIELDS))
    return evaluation_view(_read(data_format, source, split, seed, options), candidates=view)
