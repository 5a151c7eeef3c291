"""CachedLoss: the loss and every gradient equal the uncached loss's, the encoder sees mini-batches, the trainer's
scaling reaches the pair head, bad compositions are refused."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)

from alc_hf import ALCLoss, CachedLoss, TCMLoss
from alc_hf.training.loss_composition import build_loss
from tests.test_losses import ForwardCounter, features

QUERIES = [
    "sony wh1000 black",
    "apple iphone 15 128gb",
    "usb c cable 2m",
    "dell xps 13 laptop",
    "bose qc45 white",
    "sony wh1000 black",
    "pixel 8 pro case",
    "lg oled 55",
    "asus zenbook 14",
    "logitech mx master",
]
LABELS = [
    "Sony WH-1000XM5 Black",
    "Apple iPhone 15 Blue",
    "USB-C Cable 2m",
    "Dell XPS 13 9340",
    "Bose QC45 White",
    "Sony WH-1000XM5 Black Case",
    "Pixel 8 Pro Case",
    "LG OLED55C3",
    "ASUS Zenbook 14 OLED",
    "Logitech MX Master 3S",
]
NEGATIVES = [
    "Sony WH-1000XM4 Black",
    "Apple iPhone 14 Blue",
    "USB-A Cable 1m",
    "Dell XPS 15 9530",
    "Bose QC35 White",
    "Sony WF-1000XM5",
    "Pixel 7 Pro Case",
    "LG OLED65C3",
    "ASUS Vivobook 14",
    "Logitech MX Anywhere 3",
]
# Rows 0 and 5 are one query with two positives (ids 0 and 5), each masked for the other; row 9's hard negative is
# row 2's positive.
LABEL_IDS = torch.tensor(
    [[0, 100, 5], *([[i, 100 + i, -1] for i in range(1, 5)]), [5, 105, 0]]
    + [[i, 100 + i, -1] for i in range(6, 9)]
    + [[9, 2, -1]]
)

COMPOSITIONS = {
    "tcm-alc-softmax": lambda m: TCMLoss(m, base_loss=ALCLoss(m, num_negatives=3)),
    "alc-mnrl": lambda m: ALCLoss(m, base_loss=MultipleNegativesRankingLoss(m)),
    "tcm-mnrl-hardness": lambda m: TCMLoss(
        m, base_loss=MultipleNegativesRankingLoss(m, hardness_mode="hard_negatives", hardness_strength=5.0)
    ),
    "mnrl": lambda m: MultipleNegativesRankingLoss(m),
}


def gradients(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def total(parts) -> torch.Tensor:
    return sum(parts.values()) if isinstance(parts, dict) else parts


@pytest.mark.parametrize("name", COMPOSITIONS)
@pytest.mark.parametrize("mini_batch_size", [3, 10])
def test_loss_and_gradients_equal_the_uncached_loss(tiny_model, name, mini_batch_size):
    loss = COMPOSITIONS[name](tiny_model)
    labels = LABEL_IDS
    batch = features(tiny_model, QUERIES, LABELS, NEGATIVES)
    uncached = loss(batch, labels)
    total(uncached).backward()
    expected = gradients(loss)
    assert any(key.startswith("model.") for key in expected), "the encoder must get a gradient"
    loss.zero_grad(set_to_none=True)

    cached_loss = CachedLoss(loss, mini_batch_size=mini_batch_size)
    counter = ForwardCounter(tiny_model)
    cached = cached_loss(features(tiny_model, QUERIES, LABELS, NEGATIVES), labels)
    assert isinstance(cached, dict) == isinstance(uncached, dict)
    if isinstance(uncached, dict):
        assert list(cached) == list(uncached)
        for part in uncached:
            torch.testing.assert_close(cached[part], uncached[part].detach(), rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(cached.detach(), uncached.detach(), rtol=1e-5, atol=1e-6)
    # Step 1 embeds every text once, in mini-batches; the backward pass embeds them all again (step 3).
    assert counter.rows == 3 * len(QUERIES)
    total(cached).backward()
    assert counter.rows == 6 * len(QUERIES)
    assert counter.calls == 2 * 3 * math.ceil(len(QUERIES) / mini_batch_size)
    received = {key.removeprefix("loss."): value for key, value in gradients(cached_loss).items()}
    assert received.keys() == expected.keys()
    for key, gradient in expected.items():
        torch.testing.assert_close(received[key], gradient, rtol=1e-4, atol=1e-6, msg=key)


def test_training_with_accumulation_matches_the_uncached_run(tiny_encoder_dir, tmp_path):
    """Two optimiser steps of two accumulated micro-batches: the trainer divides each micro-batch's loss by 2 before
    its backward pass, and that division must reach the pair head, whose gradient comes from the cached step."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from tests.tiny_model import load_tiny_encoder

    rows = Dataset.from_dict({"anchor": QUERIES[1:5] * 2, "positive": LABELS[1:5] * 2, "negative": NEGATIVES[1:5] * 2})
    trained = {}
    for cached in (False, True):
        model = load_tiny_encoder(tiny_encoder_dir)
        torch.manual_seed(0)
        loss = TCMLoss(model, base_loss=ALCLoss(model))
        loss = CachedLoss(loss, mini_batch_size=3) if cached else loss
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / str(cached)),
            max_steps=2,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            learning_rate=1e-2,
            learning_rate_mapping={r"pair_head\.": 1e-1},
            use_cpu=True,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            seed=0,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=rows, loss=loss)
        trainer.train()
        logged = [entry for entry in trainer.state.log_history if "loss" in entry]
        assert all(set(entry) >= {"base", "ql", "qb", "tcm"} for entry in logged)
        composed = loss.loss if cached else loss
        trained[cached] = {key: p.detach().clone() for key, p in composed.named_parameters()}
    assert trained[True].keys() == trained[False].keys()
    moved = 0
    for key, parameter in trained[False].items():
        torch.testing.assert_close(trained[True][key], parameter, rtol=1e-4, atol=1e-5, msg=key)
        moved += "pair_head" in key
    assert moved == 4, "the pair head's weights and biases are compared"


def test_evaluation_returns_the_parts_without_a_backward_hook(tiny_model):
    loss = CachedLoss(TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model)), mini_batch_size=4)
    batch = features(tiny_model, QUERIES, LABELS, NEGATIVES)
    with torch.no_grad():
        parts = loss(batch, None)
        plain = loss.loss(batch, None)
    assert list(parts) == ["base", "ql", "qb", "tcm"] and not any(p.requires_grad for p in parts.values())
    for part in plain:
        torch.testing.assert_close(parts[part], plain[part], rtol=1e-5, atol=1e-6)


def test_build_loss_wraps_the_composition_and_the_card_names_it(tiny_model):
    loss = build_loss(tiny_model, mini_batch_size=16)
    assert isinstance(loss, CachedLoss) and isinstance(loss.loss, TCMLoss) and loss.mini_batch_size == 16
    assert loss.get_config_dict()["loss"].startswith('TCMLoss(base_loss="ALCLoss(')
    assert "2101.06983" in loss.citation
    assert isinstance(build_loss(tiny_model), TCMLoss), "no mini-batches: the loss itself"


def test_bad_compositions_are_refused_with_what_to_do(tiny_model):
    with pytest.raises(TypeError, match="CachedLoss cannot wrap CachedMultipleNegativesRankingLoss"):
        CachedLoss(CachedMultipleNegativesRankingLoss(tiny_model))
    with pytest.raises(TypeError, match="needs a loss object with compute_loss_from_embeddings"):
        CachedLoss("softmax")
    with pytest.raises(ValueError, match="mini_batch_size must be >= 1, got 0"):
        CachedLoss(TCMLoss(tiny_model), mini_batch_size=0)
    with pytest.raises(TypeError, match=r"wrap the whole loss instead: CachedLoss\(TCMLoss\(model, ALCLoss\(model\)\)"):
        TCMLoss(tiny_model, base_loss=CachedLoss(ALCLoss(tiny_model)))
