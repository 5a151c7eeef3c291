"""alc_hf: train embedding models whose similarity threshold can be trusted (ALC + TCM for sentence-transformers)."""

from alc_hf._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __all__ = lazy_exports(
    __name__,
    {"alc_hf.losses": ("ALCLoss", "HardestNegativeTripletLoss", "MultiPositiveSoftmaxLoss", "PairHead", "TCMLoss")},
)
__all__ += ["__version__"]
