"""Fine-tune a bi-encoder with ALC (+ TCM) on product pairs.

    python recipes/train_alc.py --output_dir outputs/demo
    accelerate launch recipes/train_alc.py --output_dir outputs/run --per_device_train_batch_size 64

With no data arguments it trains on alc_hf's built-in product pairs; every SentenceTransformerTrainingArguments
option is accepted (`--max_steps`, `--learning_rate`, `--seed`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from transformers import HfArgumentParser

from alc_hf import ALCLoss, TCMLoss
from alc_hf.data import product_pairs
from alc_hf.models import DEFAULT_MODEL, load_encoder


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL, metadata={"help": "Local folder or Hub id; the default loads offline when installed."}
    )


@dataclass
class LossArguments:
    base_loss: str = field(default="softmax", metadata={"help": "Backbone: 'softmax' (DEXML-style) or 'triplet'."})
    alc: bool = field(default=True, metadata={"help": "Add the ALC pair-head objectives (L_ql and L_qb)."})
    ql_weight: float = field(default=1.0, metadata={"help": "β1, weight of L_ql."})
    qb_weight: float = field(default=1.0, metadata={"help": "β2, weight of L_qb."})
    num_negatives: int = field(default=8, metadata={"help": "k, hardest in-batch negatives for L_qb."})
    pair_head_learning_rate: float = field(
        default=1e-3, metadata={"help": "Learning rate of the pair head (the encoder's is --learning_rate)."}
    )
    tcm: bool = field(default=True, metadata={"help": "Add the TCM regulariser."})
    pos_margin: float = field(default=0.9, metadata={"help": "TCM m+."})
    neg_margin: float = field(default=0.5, metadata={"help": "TCM m-."})


def main() -> None:
    parser = HfArgumentParser((ModelArguments, LossArguments, SentenceTransformerTrainingArguments))
    model_args, loss_args, training_args = parser.parse_args_into_dataclasses()

    model = load_encoder(model_args.model_name_or_path)
    loss = loss_args.base_loss
    if loss_args.alc:
        loss = ALCLoss(
            model,
            base_loss=loss,
            ql_weight=loss_args.ql_weight,
            qb_weight=loss_args.qb_weight,
            num_negatives=loss_args.num_negatives,
        )
        training_args.learning_rate_mapping = {
            r"pair_head\.": loss_args.pair_head_learning_rate,
            **(training_args.learning_rate_mapping or {}),
        }
    if loss_args.tcm:
        loss = TCMLoss(model, base_loss=loss, pos_margin=loss_args.pos_margin, neg_margin=loss_args.neg_margin)

    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=product_pairs(), loss=loss)
    trainer.train()

    final_dir = f"{training_args.output_dir}/final"
    trainer.save_model(final_dir)
    if trainer.is_world_process_zero():
        alc_loss = loss if isinstance(loss, ALCLoss) else getattr(loss, "base_loss", None)
        if isinstance(alc_loss, ALCLoss):
            alc_loss.save_pair_head(final_dir)
        logged = [entry for entry in trainer.state.log_history if "loss" in entry]
        if logged:
            parts = [key for key in ("base", "ql", "qb", "tcm") if key in logged[0]]
            print(
                "loss parts, first -> last log: "
                + ", ".join(f"{key} {logged[0][key]:.4f} -> {logged[-1][key]:.4f}" for key in parts)
            )
        print(f"model saved in {final_dir} (model card: {final_dir}/README.md)")


if __name__ == "__main__":
    main()
