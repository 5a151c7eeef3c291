"""Query–label data for training and evaluation: the query–label form, readers, training rows, samplers, evaluation
views and the built-in catalog. ``load_query_label_data`` and ``load_evaluation_views`` read every supported format.
Parts are imported on first use (the NumPy-only ones never load torch)."""

from alc_hf._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "alc_hf.data.query_labels": ("RaggedIds", "XMCData"),
        "alc_hf.data.formats": ("DataFormatError",),
        "alc_hf.data.xmc": ("read_filter_pairs", "read_xmc"),
        "alc_hf.data.tables": ("read_product_tables",),
        "alc_hf.data.beir": ("read_beir",),
        "alc_hf.data.pairs": ("read_pairs",),
        "alc_hf.data.views": (
            "DATA_FORMATS",
            "EvaluationView",
            "evaluation_view",
            "load_evaluation_splits",
            "load_evaluation_view",
            "load_evaluation_views",
            "load_query_label_data",
            "table_split",
        ),
        "alc_hf.data.catalog": ("builtin_catalog",),
        "alc_hf.data.rows": ("training_rows",),
        "alc_hf.data.sampler": ("OneRowPerQueryBatchSampler", "UniqueQueryLabelBatchSampler"),
        "alc_hf.data.clustered": (
            "ClusterRefreshCallback",
            "ClusteredBatchSampler",
            "batch_hardness",
            "hardest_negative_cosines",
        ),
    },
)
