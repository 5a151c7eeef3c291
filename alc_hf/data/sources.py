"""Named data sources: the built-in catalog, WDC-style product tables and XMC datasets, each as train,
calibration and test splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alc_hf.data.catalog import builtin_catalog
from alc_hf.data.readers import read_product_tables, read_xmc
from alc_hf.data.xmc import XMCData

DATA_SOURCES = ("catalog", "wdc", "xmc")
# The view each source is evaluated in by default: WDC pairs are labelled blocks (every candidate verified).
DEFAULT_VIEW = {"catalog": "corpus", "wdc": "labelled", "xmc": "corpus"}


def _check_source(source: str, data_dir: str | Path | None) -> Path | None:
    if source not in DATA_SOURCES:
        raise ValueError(f"data source must be one of {DATA_SOURCES}, got {source!r}")
    if source == "catalog":
        if data_dir is not None:
            raise ValueError("the built-in catalog takes no data_dir")
        return None
    if data_dir is None:
        raise ValueError(f"data source {source!r} needs a data_dir")
    return Path(data_dir)


def load_training_split(source: str = "catalog", data_dir: str | Path | None = None, seed: int = 0) -> XMCData:
    """The training split of a source (``seed`` picks the built-in catalog's offers)."""
    path = _check_source(source, data_dir)
    if source == "catalog":
        return builtin_catalog(seed=seed, split="trn")
    if source == "wdc":
        return read_product_tables(path, split="train")
    return read_xmc(path, split="trn")


def wdc_catalog_split(data_dir: str | Path, split: str) -> XMCData:
    """A WDC split as its catalog view reads it (``../shared/data/README.md``): the queries that have a match in the
    split, each with its positives over every split as ground truth.

    tableB holds offers of a query's product that only other splits label as matches; counting them as errors
    would understate precision further than the unlabelled re-listed offers already do. Queries whose only matches
    come from other splits are left out: the split's blocking says they have none."""
    in_split = read_product_tables(data_dir, split=split)
    data = read_product_tables(data_dir, split=split, ground_truth="all_splits")
    return data.select_queries(
        in_split.positives.lengths() > 0, source=f"{data.source} (catalog view: queries with a match in {split})"
    )


def load_evaluation_splits(
    source: str = "catalog",
    data_dir: str | Path | None = None,
    seed: int = 0,
    calibration_fraction: float = 0.5,
    catalog_view: bool = False,
) -> tuple[XMCData, XMCData]:
    """``(calibration, test)``: the split a threshold is chosen on and the split it is applied to.

    The catalog uses its ``val`` and ``tst`` splits and WDC tables ``valid.csv`` and ``test.csv`` (with
    ``catalog_view``, as :func:`wdc_catalog_split` reads them). XMC datasets publish no validation split, so their
    test queries are divided at random (``seed``) into disjoint calibration (``calibration_fraction``) and test parts.
    """
    path = _check_source(source, data_dir)
    if source == "catalog":
        return builtin_catalog(seed=seed, split="val"), builtin_catalog(seed=seed, split="tst")
    if source == "wdc":
        if catalog_view:
            return wdc_catalog_split(path, "valid"), wdc_catalog_split(path, "test")
        return read_product_tables(path, split="valid"), read_product_tables(path, split="test")
    if not 0.0 < calibration_fraction < 1.0:
        raise ValueError(f"calibration_fraction must be in (0, 1), got {calibration_fraction}")
    data = read_xmc(path, split="tst")
    in_calibration = np.zeros(data.num_queries, dtype=bool)
    order = np.random.default_rng(seed).permutation(data.num_queries)
    in_calibration[order[: round(calibration_fraction * data.num_queries)]] = True
    return (
        data.select_queries(in_calibration, source=f"{data.source} (calibration part)"),
        data.select_queries(~in_calibration, source=f"{data.source} (test part)"),
    )
