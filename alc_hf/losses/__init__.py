"""Losses for threshold-consistent product retrieval; drop-in for SentenceTransformerTrainer."""

from alc_hf.losses.alc import ALCLoss
from alc_hf.losses.cached import CachedLoss
from alc_hf.losses.hardest_negative_triplet import HardestNegativeTripletLoss
from alc_hf.losses.multi_positive_softmax import MultiPositiveSoftmaxLoss
from alc_hf.losses.pair_head import PairHead
from alc_hf.losses.tcm import TCMLoss

__all__ = ["ALCLoss", "CachedLoss", "HardestNegativeTripletLoss", "MultiPositiveSoftmaxLoss", "PairHead", "TCMLoss"]
