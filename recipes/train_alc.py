"""Fine-tune a bi-encoder with ALC + TCM, measure coverage before and after, save (and optionally push) the model.

    python recipes/train_alc.py                                   # built-in catalog, offline all-MiniLM-L6-v2
    accelerate launch recipes/train_alc.py --output_dir outputs/run --per_device_train_batch_size 64
    accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16 recipes/train_alc.py \
        --data xmc --data_dir data/LF-AmazonTitles-131K --output_dir outputs/lf131k
    torchrun --nproc_per_node 2 recipes/train_alc.py ...

Every SentenceTransformerTrainingArguments option is accepted (`--max_steps`, `--learning_rate`, `--seed`,
`--push_to_hub`, `--hub_model_id`, `--resume_from_checkpoint`, ...). See docs/recipes.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from transformers import HfArgumentParser, set_seed

from alc_hf.data import ClusteredBatchSampler, ClusterRefreshCallback, UniqueQueryLabelBatchSampler, training_rows
from alc_hf.data.sources import DATA_SOURCES, load_training_split
from alc_hf.evaluation import CoverageEvaluator
from alc_hf.evaluation.views import evaluation_views
from alc_hf.models import DEFAULT_MODEL, load_encoder
from alc_hf.pipeline import (
    LossCheckpointCallback,
    add_lora_adapter,
    build_loss,
    check_hub_ready,
    check_lora_available,
    find_pair_head,
    finish_run,
    load_loss_checkpoint,
    pair_head_learning_rates,
    run_coverage_evaluation,
)
from alc_hf.verifier import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_NUM_MINED,
    DEFAULT_POS_WEIGHT,
    initial_verifier,
    train_verifier,
    verifier_pairs,
)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL, metadata={"help": "Local folder or Hub id; the default loads offline when installed."}
    )
    max_seq_length: int | None = field(default=None, metadata={"help": "Truncate inputs to this many tokens."})
    lora_r: int = field(default=0, metadata={"help": "Train a LoRA adapter of this rank instead of the encoder."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules to adapt (default: PEFT's choice for the architecture)."}
    )


@dataclass
class DataArguments:
    data: str = field(
        default="catalog",
        metadata={"help": f"One of {DATA_SOURCES}: the built-in catalog, WDC-style product tables, an XMC dataset."},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder of the wdc or xmc data."})
    catalog_seed: int = field(default=0, metadata={"help": "Seed of the built-in catalog's offers."})
    num_hard_negatives: int = field(default=0, metadata={"help": "Hard-negative columns per training row."})
    max_positive_ids: int = field(default=32, metadata={"help": "Positive label ids kept per row in `label`."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    one_row_per_query: bool = field(default=False, metadata={"help": "One random positive per query per epoch."})
    batching: str = field(
        default="random",
        metadata={"help": "'random', or 'clustered': rows whose queries the encoder places close share a batch."},
    )
    cluster_size: int = field(default=4, metadata={"help": "Rows per cluster with clustered batching."})


@dataclass
class LossArguments:
    base_loss: str = field(default="softmax", metadata={"help": "Backbone: 'softmax' (DEXML-style) or 'triplet'."})
    alc: bool = field(default=True, metadata={"help": "Add the ALC pair-head objectives (L_ql and L_qb)."})
    ql_weight: float = field(default=1.0, metadata={"help": "β1, weight of L_ql."})
    qb_weight: float = field(default=1.0, metadata={"help": "β2, weight of L_qb."})
    num_negatives: int = field(default=8, metadata={"help": "k, hardest in-batch negatives for L_qb."})
    pair_head_hidden_dim: int | None = field(
        default=None, metadata={"help": "Hidden width of the pair head (default: the embedding size; 0: one Linear)."}
    )
    head_warmup_steps: int = field(
        default=0, metadata={"help": "Steps during which the pair head learns on detached embeddings."}
    )
    pair_head_learning_rate: float = field(
        default=1e-3, metadata={"help": "Learning rate of the pair head (the encoder's is --learning_rate)."}
    )
    tcm: bool = field(default=True, metadata={"help": "Add the TCM regulariser."})
    pos_margin: float = field(default=0.9, metadata={"help": "TCM m+."})
    neg_margin: float = field(default=0.5, metadata={"help": "TCM m-."})


@dataclass
class EvaluationArguments:
    evaluation_view: str | None = field(
        default=None, metadata={"help": "'corpus' or 'labelled' (default: labelled for wdc, corpus otherwise)."}
    )
    target_precisions: list[float] = field(default_factory=lambda: [0.9, 0.95])
    calibration_method: str = field(default="empirical", metadata={"help": "'empirical' or 'clopper_pearson'."})
    evaluate_before_training: bool = field(default=True, metadata={"help": "Measure coverage before training too."})


@dataclass
class VerifierArguments:
    train_verifier: bool = field(
        default=False,
        metadata={"help": "After the bi-encoder, train a cross-encoder verifier on negatives mined with it."},
    )
    verifier_model: str = field(
        default=DEFAULT_MODEL, metadata={"help": "Encoder (gets a new head) or cross-encoder the verifier starts from."}
    )
    verifier_num_mined: int = field(default=DEFAULT_NUM_MINED, metadata={"help": "Negatives mined per query."})
    verifier_epochs: float = field(default=DEFAULT_EPOCHS)
    verifier_learning_rate: float = field(default=DEFAULT_LEARNING_RATE)
    verifier_pos_weight: str = field(
        default=str(DEFAULT_POS_WEIGHT), metadata={"help": "Weight of the positive class: a number or 'balanced'."}
    )
    verifier_batch_size: int = field(default=DEFAULT_BATCH_SIZE)
    verifier_max_length: int = field(default=DEFAULT_MAX_LENGTH)
    rerank_depth: int = field(default=5, metadata={"help": "Top predictions the verifier re-ranks (verifier_rerank)."})


# Defaults for a first run on a CPU; any of them can be given on the command line.
RECIPE_DEFAULTS = {
    "output_dir": "outputs/train_alc",
    "per_device_train_batch_size": 64,
    "num_train_epochs": 1,
    "learning_rate": 5e-5,
    "warmup_ratio": 0.1,
    "logging_steps": 10,
    "save_strategy": "no",
    "report_to": "none",
}


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser(
        (
            ModelArguments,
            DataArguments,
            LossArguments,
            EvaluationArguments,
            VerifierArguments,
            SentenceTransformerTrainingArguments,
        )
    )
    parser.set_defaults(**RECIPE_DEFAULTS)
    model_args, data_args, loss_args, eval_args, verifier_args, training_args = parser.parse_args_into_dataclasses(
        args=argv
    )
    # What can only fail at the end (the push, the verifier) or after set-up (LoRA) is checked before any data is read.
    if training_args.push_to_hub:
        check_hub_ready(training_args.hub_model_id, training_args.hub_token)
    if model_args.lora_r:
        check_lora_available()
    verifier_start = None
    if verifier_args.train_verifier:
        verifier_start = initial_verifier(
            verifier_args.verifier_model, verifier_args.verifier_max_length, training_args.seed
        )

    # Seed before anything random is built: the pair head is initialised with the loss, before the Trainer.
    set_seed(training_args.seed)
    model = load_encoder(model_args.model_name_or_path)
    if model_args.max_seq_length:
        model.max_seq_length = model_args.max_seq_length
    if model_args.lora_r:
        add_lora_adapter(
            model,
            model_args.model_name_or_path,
            model_args.lora_r,
            model_args.lora_alpha,
            model_args.lora_dropout,
            model_args.lora_target_modules,
        )

    train_data = load_training_split(data_args.data, data_args.data_dir, seed=data_args.catalog_seed)
    rows = training_rows(train_data, data_args.num_hard_negatives, data_args.max_positive_ids, seed=training_args.seed)
    model.model_card_data.train_datasets = [{"name": train_data.source}]
    if data_args.max_train_samples is not None:
        rows = rows.select(range(min(data_args.max_train_samples, len(rows))))
    calibration, test = evaluation_views(
        data_args.data, data_args.data_dir, eval_args.evaluation_view, seed=data_args.catalog_seed
    )
    evaluator_options = {
        "target_precisions": eval_args.target_precisions,
        "calibration_method": eval_args.calibration_method,
        "batch_size": training_args.per_device_eval_batch_size,
        "show_progress_bar": not training_args.disable_tqdm,
    }

    loss = build_loss(
        model,
        loss_args.base_loss,
        loss_args.alc,
        loss_args.ql_weight,
        loss_args.qb_weight,
        loss_args.num_negatives,
        loss_args.pair_head_hidden_dim,
        loss_args.head_warmup_steps,
        loss_args.tcm,
        loss_args.pos_margin,
        loss_args.neg_margin,
        gather_across_devices=training_args.world_size > 1,
    )
    training_args.learning_rate_mapping = {
        **pair_head_learning_rates(loss, loss_args.pair_head_learning_rate),
        **(training_args.learning_rate_mapping or {}),
    }
    callbacks = [LossCheckpointCallback(loss, model)]
    if data_args.batching == "clustered":
        training_args.batch_sampler = ClusteredBatchSampler.configure(
            cluster_size=data_args.cluster_size, one_row_per_query=data_args.one_row_per_query
        )
        callbacks.append(ClusterRefreshCallback(refresh_at_start=True))
    elif data_args.batching == "random":
        training_args.batch_sampler = UniqueQueryLabelBatchSampler.configure(
            one_row_per_query=data_args.one_row_per_query
        )
    else:
        raise ValueError(f"--batching must be 'random' or 'clustered', got {data_args.batching!r}")
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=rows,
        loss=loss,
        # After training, the ALC pair head also decides acceptance (pair_head and combined accept scores).
        evaluator=CoverageEvaluator(
            calibration, test, name=data_args.data, pair_head=find_pair_head(loss), **evaluator_options
        ),
        callbacks=callbacks,
    )
    before = None
    if eval_args.evaluate_before_training:
        before = run_coverage_evaluation(
            trainer, CoverageEvaluator(calibration, test, name=f"{data_args.data}_before_training", **evaluator_options)
        )
    if training_args.resume_from_checkpoint:
        load_loss_checkpoint(loss, model, training_args.resume_from_checkpoint)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    verifier = None
    if verifier_start is not None:
        # Mined with the bi-encoder just trained: its own mistakes are what the verifier must catch.
        pairs = verifier_pairs(train_data, model, verifier_args.verifier_num_mined, seed=training_args.seed)
        pos_weight = verifier_args.verifier_pos_weight
        verifier = train_verifier(
            pairs,
            verifier_start,
            Path(training_args.output_dir) / "final" / "verifier",
            epochs=verifier_args.verifier_epochs,
            learning_rate=verifier_args.verifier_learning_rate,
            batch_size=verifier_args.verifier_batch_size,
            pos_weight=pos_weight if pos_weight == "balanced" else float(pos_weight),
            seed=training_args.seed,
            use_cpu=training_args.use_cpu,
            report_to="none",
            disable_tqdm=training_args.disable_tqdm,
            logging_steps=training_args.logging_steps,
        )
        trainer.evaluator = CoverageEvaluator(
            calibration,
            test,
            name=data_args.data,
            pair_head=find_pair_head(loss),
            verifier=verifier,
            rerank_depth=verifier_args.rerank_depth,
            **evaluator_options,
        )
    after = run_coverage_evaluation(trainer, trainer.evaluator)
    finish_run(trainer, loss, before, after)


if __name__ == "__main__":
    sys.exit(main())
