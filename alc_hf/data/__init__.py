"""Query–label data for training and evaluation, without torch: the readers (one per format), the rule they share
for labelled pairs, the evaluation views, the training rows and the built-in catalog. ``load_query_label_data`` and
``load_evaluation_views`` read every supported format. Parts are imported on first use."""

from typing import TYPE_CHECKING

from alc_hf._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "alc_hf.core.query_labels": ("QueryLabelData", "RaggedIds", "XMCData"),
        "alc_hf.data.formats": ("DataFormatError",),
        "alc_hf.data.xmc": ("read_filter_pairs", "read_xmc"),
        "alc_hf.data.tables": ("read_product_tables",),
        "alc_hf.data.beir": ("read_beir",),
        "alc_hf.data.pairs": ("read_pairs",),
        "alc_hf.data.views": ("EvaluationView", "evaluation_view", "table_split"),
        "alc_hf.data.loading": (
            "DATA_FORMATS",
            "load_evaluation_splits",
            "load_evaluation_view",
            "load_evaluation_views",
            "load_query_label_data",
        ),
        "alc_hf.data.catalog": ("builtin_catalog",),
        "alc_hf.data.rows": ("training_rows",),
    },
)

if TYPE_CHECKING:
    from alc_hf.core.query_labels import QueryLabelData, RaggedIds, XMCData
    from alc_hf.data.beir import read_beir
    from alc_hf.data.catalog import builtin_catalog
    from alc_hf.data.formats import DataFormatError
    from alc_hf.data.loading import (
        DATA_FORMATS,
        load_evaluation_splits,
        load_evaluation_view,
        load_evaluation_views,
        load_query_label_data,
    )
    from alc_hf.data.pairs import read_pairs
    from alc_hf.data.rows import training_rows
    from alc_hf.data.tables import read_product_tables
    from alc_hf.data.views import EvaluationView, evaluation_view, table_split
    from alc_hf.data.xmc import read_filter_pairs, read_xmc
