"""A tiny random BERT encoder built offline (own vocabulary, no hub), for fast tests."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from transformers import BertConfig, BertModel, BertTokenizerFast

HIDDEN_SIZE = 32
WORDS = ["black", "white", "blue", "red", "pro", "max", "mini", "usb", "cable", "phone", "case", "laptop", "drive"]


def build_tiny_encoder_files(directory: Path, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """Write a 2-layer BERT (hidden size 32, no dropout) and its WordPiece tokenizer into ``directory``.

    At BERT's default ``initializer_range`` (0.02) the [CLS] output hardly depends on the input (a new classification
    head's logits differ by about 1e-5 between pairs), so a cross-encoder on it learns nothing in a few steps; about
    0.3 makes a pair task learnable in a few dozen."""
    directory.mkdir(parents=True, exist_ok=True)
    characters = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *("##" + c for c in characters), *WORDS]
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    return directory


def load_tiny_encoder(directory: Path, max_seq_length: int = 48) -> SentenceTransformer:
    transformer = Transformer(str(directory), max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")
