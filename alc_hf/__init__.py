"""alc_hf: train embedding models whose similarity threshold can be trusted (ALC + TCM for sentence-transformers).

The names most code needs are served here, each imported on first use (``import alc_hf`` loads no torch); the
layers they live in are drawn in docs/architecture.md."""

from typing import TYPE_CHECKING

from alc_hf._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "alc_hf.losses": (
            "ALCLoss",
            "CachedLoss",
            "HardestNegativeTripletLoss",
            "MultiPositiveSoftmaxLoss",
            "PairHead",
            "TCMLoss",
        ),
        "alc_hf.evaluation.evaluator": ("CoverageEvaluator",),
        "alc_hf.training.batch_samplers": ("UniqueQueryLabelBatchSampler",),
        "alc_hf.training.clustered_batches": ("ClusterRefreshCallback", "ClusteredBatchSampler"),
    },
)
__all__ += ["__version__"]

if TYPE_CHECKING:
    from alc_hf.evaluation.evaluator import CoverageEvaluator
    from alc_hf.losses import (
        ALCLoss,
        CachedLoss,
        HardestNegativeTripletLoss,
        MultiPositiveSoftmaxLoss,
        PairHead,
        TCMLoss,
    )
    from alc_hf.training.batch_samplers import UniqueQueryLabelBatchSampler
    from alc_hf.training.clustered_batches import ClusteredBatchSampler, ClusterRefreshCallback
