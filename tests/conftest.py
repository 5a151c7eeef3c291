from __future__ import annotations

import os
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from tests.tiny_model import build_tiny_encoder_files, load_tiny_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder_files(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture
def tiny_model(tiny_encoder_dir: Path) -> SentenceTransformer:
    """A fresh tiny encoder per test (loading is fast; training one test must not leak into another)."""
    return load_tiny_encoder(tiny_encoder_dir)
