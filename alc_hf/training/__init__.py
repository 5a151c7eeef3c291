"""Training, as library parts: the options of the train program (:mod:`~alc_hf.training.config`), the loss they
compose (:mod:`~alc_hf.training.loss_composition`), the batch samplers (unique queries and labels per batch, and
clustered hard batches), the callbacks (cluster refresh, the loss's own state in checkpoints), the verifier's
training, LoRA, the Hub push, the output folder's rules, and the program itself (:mod:`~alc_hf.training.train`,
``alc-hf train``). Parts are imported on first use."""

from typing import TYPE_CHECKING

from alc_hf._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "alc_hf.training.batch_samplers": ("OneRowPerQueryBatchSampler", "UniqueQueryLabelBatchSampler"),
        "alc_hf.training.clustered_batches": ("ClusterRefreshCallback", "ClusteredBatchSampler"),
        "alc_hf.training.loss_composition": ("build_loss", "find_pair_head", "pair_head_learning_rates"),
        "alc_hf.training.verifier": ("train_verifier", "verifier_pairs"),
    },
)

if TYPE_CHECKING:
    from alc_hf.training.batch_samplers import OneRowPerQueryBatchSampler, UniqueQueryLabelBatchSampler
    from alc_hf.training.clustered_batches import ClusteredBatchSampler, ClusterRefreshCallback
    from alc_hf.training.loss_composition import build_loss, find_pair_head, pair_head_learning_rates
    from alc_hf.training.verifier import train_verifier, verifier_pairs
