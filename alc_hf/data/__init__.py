"""Product data for training and evaluation: the query–label form, readers, training rows, samplers, evaluation
views and the built-in catalog. Parts are imported on first use (the NumPy-only ones never load torch)."""

from alc_hf._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "alc_hf.data.query_labels": ("RaggedIds", "XMCData"),
        "alc_hf.data.formats": ("DataFormatError",),
        "alc_hf.data.xmc": ("read_filter_pairs", "read_xmc"),
        "alc_hf.data.tables": ("read_product_tables",),
        "alc_hf.data.views": ("EvaluationView", "evaluation_view", "evaluation_views", "table_split"),
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
