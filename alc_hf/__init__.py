"""alc_hf: train embedding models whose similarity threshold can be trusted (ALC + TCM for sentence-transformers)."""

from alc_hf.losses import ALCLoss, HardestNegativeTripletLoss, MultiPositiveSoftmaxLoss, PairHead, TCMLoss

__version__ = "0.1.0"

__all__ = ["ALCLoss", "HardestNegativeTripletLoss", "MultiPositiveSoftmaxLoss", "PairHead", "TCMLoss", "__version__"]
