"""Run by tests/test_verifier.py under `torchrun --nproc_per_node 2`: train_verifier on two CPU processes, one
checkpoint at the end of the epoch (its step count shows whether the epoch was split between the processes)."""

from __future__ import annotations

import sys
from pathlib import Path

from datasets import Dataset

from alc_hf.data import QueryLabelData, RaggedIds
from alc_hf.training.verifier import train_verifier, verifier_pairs
from tests.tiny_model import WORDS


def equality_pairs() -> Dataset:
    """Is the label the query's own word? 13 positives, 156 negatives."""
    n = len(WORDS)
    data = QueryLabelData(
        queries=WORDS,
        labels=WORDS,
        positives=RaggedIds.from_lists([[i] for i in range(n)]),
        negatives=RaggedIds.from_lists([[j for j in range(n) if j != i] for i in range(n)]),
    )
    return verifier_pairs(data)


if __name__ == "__main__":
    encoder_dir, output_dir = Path(sys.argv[1]), Path(sys.argv[2])
    train_verifier(
        equality_pairs(),
        encoder_dir,
        output_dir,
        epochs=1,
        batch_size=8,
        learning_rate=3e-3,
        max_length=16,
        # transformers runs DDP on CPU only when told to use the CPU.
        use_cpu=True,
        save_strategy="epoch",
        logging_strategy="no",
        disable_tqdm=True,
    )
