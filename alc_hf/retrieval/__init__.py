"""Top-k retrieval of labels for query embeddings with faiss: exact or approximate, filter pairs removed, or
restricted to per-query candidates. Needs numpy and faiss only."""

from alc_hf.retrieval.index import LabelIndex, TopK

__all__ = ["LabelIndex", "TopK"]
