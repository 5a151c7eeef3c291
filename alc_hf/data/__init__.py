"""Product data for training and evaluation: readers, training rows, evaluation views, generators."""

from alc_hf.data.catalog import builtin_catalog
from alc_hf.data.clustered import (
    ClusteredBatchSampler,
    ClusterRefreshCallback,
    batch_hardness,
    hardest_negative_cosines,
)
from alc_hf.data.examples import product_pairs
from alc_hf.data.readers import DataFormatError, read_filter_pairs, read_product_tables, read_xmc
from alc_hf.data.sampler import OneRowPerQueryBatchSampler, UniqueQueryLabelBatchSampler
from alc_hf.data.training import EvaluationView, evaluation_view, training_rows
from alc_hf.data.xmc import RaggedIds, XMCData

__all__ = [
    "ClusterRefreshCallback",
    "ClusteredBatchSampler",
    "DataFormatError",
    "EvaluationView",
    "OneRowPerQueryBatchSampler",
    "RaggedIds",
    "UniqueQueryLabelBatchSampler",
    "XMCData",
    "batch_hardness",
    "builtin_catalog",
    "evaluation_view",
    "hardest_negative_cosines",
    "product_pairs",
    "read_filter_pairs",
    "read_product_tables",
    "read_xmc",
    "training_rows",
]
