"""End to end: SentenceTransformerTrainer with the composed losses, and the documented examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from alc_hf import ALCLoss, TCMLoss

REPO_ROOT = Path(__file__).resolve().parent.parent
BRANDS = ["sony", "apple", "lg", "bose", "dell", "asus", "acer", "hp"]
TYPES = ["phone", "laptop", "drive", "cable"]


def catalog_pairs() -> Dataset:
    anchors, positives, labels = [], [], []
    for b, brand in enumerate(BRANDS):
        for t, kind in enumerate(TYPES):
            anchors.append(f"{brand} {kind} {b}{t}x")
            positives.append(f"{brand.upper()} {kind} model {b}{t}X")
            labels.append([10 * b + t])
    return Dataset.from_dict({"anchor": anchors, "positive": positives, "label": labels})


def test_trainer_trains_the_composed_loss_and_the_card_names_both(tiny_model, tmp_path):
    loss = TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model, num_negatives=4))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=40,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        logging_steps=5,
        report_to="none",
        save_strategy="no",
        seed=0,
        use_cpu=True,
        learning_rate_mapping={"pair_head": 1e-2},
    )
    trainer = SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=catalog_pairs(), loss=loss)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    for part in ("base", "ql", "qb", "tcm"):
        assert logs[-1][part] < logs[0][part], f"{part} did not go down: {[entry[part] for entry in logs]}"

    tiny_model.save_pretrained(str(tmp_path / "final"))
    card = (tmp_path / "final" / "README.md").read_text()
    assert "TCMLoss" in card and "ALCLoss" in card
    assert '"base_loss": "ALCLoss(base_loss=' in card
    assert "arxiv.org/abs/2307.04047" in card and "arxiv.org/abs/2510.04551" in card


@pytest.mark.parametrize("document", ["README.md", "docs/losses.md", "docs/data.md", "docs/evaluation.md"])
def test_documented_examples_run(document, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / document).read_text(), flags=re.DOTALL)
    assert blocks, f"{document} has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, document, "exec"), {"__name__": "__docs__"})
