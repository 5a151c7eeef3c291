from __future__ import annotations

import numpy as np
import pytest

from alc_hf.core.query_labels import QueryLabelData
from alc_hf.data.catalog import SPLIT_RATES, SPLITS, builtin_catalog, catalog_products, max_num_products

NUM_PRODUCTS = 3000


@pytest.fixture(scope="module")
def splits() -> dict[str, QueryLabelData]:
    return {split: builtin_catalog(seed=0, split=split, num_products=NUM_PRODUCTS) for split in SPLITS}


def _rows(ragged) -> list[list[int]]:
    return [row.tolist() for row in ragged]


def test_deterministic_for_a_seed(splits: dict[str, QueryLabelData]) -> None:
    # Fresh objects (the second call may hit the cache, so compare values, and also against another seed).
    again = builtin_catalog(seed=0, split="tst", num_products=NUM_PRODUCTS)
    first = splits["tst"]
    assert again.queries == first.queries
    assert again.labels == first.labels
    assert _rows(again.positives) == _rows(first.positives)
    assert _rows(again.negatives) == _rows(first.negatives)
    other = builtin_catalog(seed=1, split="tst", num_products=NUM_PRODUCTS)
    assert other.queries != first.queries
    assert other.labels != first.labels


def test_labels_identical_across_splits_and_unique(splits: dict[str, QueryLabelData]) -> None:
    labels = splits["trn"].labels
    assert len(labels) == NUM_PRODUCTS
    assert len(set(labels)) == len(labels)
    for split in SPLITS:
        assert splits[split].labels == labels
    assert [p.title for p in catalog_products(0, NUM_PRODUCTS)] == labels


def test_query_texts_disjoint_across_splits(splits: dict[str, QueryLabelData]) -> None:
    texts = {split: {" ".join(q.lower().split()) for q in data.queries} for split, data in splits.items()}
    for split, data in splits.items():
        assert len(texts[split]) == data.num_queries  # no duplicates within a split either
    assert not texts["trn"] & texts["val"]
    assert not texts["trn"] & texts["tst"]
    assert not texts["val"] & texts["tst"]


def test_split_sizes(splits: dict[str, QueryLabelData]) -> None:
    for split, data in splits.items():
        assert data.num_queries == round(SPLIT_RATES[split] * NUM_PRODUCTS)
    assert splits["trn"].num_queries == 6000
    assert splits["val"].num_queries == 750
    assert splits["tst"].num_queries == 900


def test_positives_and_negatives(splits: dict[str, QueryLabelData]) -> None:
    products = catalog_products(0, NUM_PRODUCTS)
    for data in splits.values():
        assert data.filter_pairs.shape == (0, 2)
        assert data.negatives is not None
        assert len(data.negatives) == data.num_queries
        assert data.positives.lengths().min() >= 1
        neg_lengths = data.negatives.lengths()
        assert neg_lengths.max() <= 5
        assert (neg_lengths >= 1).mean() > 0.99
        for i in range(data.num_queries):
            positives = data.positives[i].tolist()
            negatives = data.negatives[i].tolist()
            assert all(0 <= j < NUM_PRODUCTS for j in positives + negatives)
            assert len(set(positives)) == len(positives)
            assert len(set(negatives)) == len(negatives)
            assert not set(positives) & set(negatives)
            brand_types = {(products[j].type, products[j].brand) for j in positives}
            assert all((products[j].type, products[j].brand) in brand_types for j in negatives)


def test_multi_positive_share(splits: dict[str, QueryLabelData]) -> None:
    for data in splits.values():
        share = float(np.mean(data.positives.lengths() >= 2))
        assert 0.15 <= share <= 0.25, share


def test_multi_positives_are_variants_or_bundles(splits: dict[str, QueryLabelData]) -> None:
    products = catalog_products(0, NUM_PRODUCTS)
    data = splits["trn"]
    kinds = {"variants": 0, "bundle": 0}
    for row in data.positives:
        if len(row) < 2:
            continue
        families = {products[j].family for j in row}
        kinds["variants" if len(families) == 1 else "bundle"] += 1
        # A bundle is a product (with its unstated variants) plus one accessory of another type.
        assert len({products[j].type for j in row}) <= 2
    assert kinds["variants"] > 0 and kinds["bundle"] > 0


def test_products_have_near_misses() -> None:
    products = catalog_products(0, NUM_PRODUCTS)
    assert len({p.type for p in products}) >= 15
    families: dict[tuple[str, str], set[str]] = {}
    for p in products:
        families.setdefault((p.type, p.brand), set()).add(p.model)
    brands_per_type: dict[str, int] = {}
    for type_key, _ in families:
        brands_per_type[type_key] = brands_per_type.get(type_key, 0) + 1
    assert all(4 <= n <= 8 for n in brands_per_type.values()), brands_per_type
    # Most brand/type groups hold several models (the neighbours of XM4 vs XM5).
    assert np.mean([len(models) >= 2 for models in families.values()]) > 0.9


def test_small_catalog_and_source() -> None:
    data = builtin_catalog(seed=3, split="val", num_products=200)
    assert data.num_labels == 200
    assert data.num_queries == 50
    assert data.source == "builtin_catalog(seed=3, split=val)"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="'trn', 'val', 'tst'"):
        builtin_catalog(split="test")
    with pytest.raises(ValueError, match="num_products"):
        builtin_catalog(num_products=max_num_products() + 1)
    with pytest.raises(ValueError, match="num_products"):
        builtin_catalog(num_products=0)
