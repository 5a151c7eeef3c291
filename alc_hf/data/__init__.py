"""Product data for training and evaluation: readers, training rows, evaluation views, generators."""

from alc_hf.data.examples import product_pairs
from alc_hf.data.sampler import OneRowPerQueryBatchSampler, UniqueQueryLabelBatchSampler
from alc_hf.data.training import EvaluationView, evaluation_view, training_rows
from alc_hf.data.xmc import RaggedIds, XMCData

__all__ = [
    "EvaluationView",
    "OneRowPerQueryBatchSampler",
    "RaggedIds",
    "UniqueQueryLabelBatchSampler",
    "XMCData",
    "evaluation_view",
    "product_pairs",
    "training_rows",
]
