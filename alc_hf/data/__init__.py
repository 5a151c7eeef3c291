"""Product data for training and evaluation."""

from alc_hf.data.examples import product_pairs

__all__ = ["product_pairs"]
