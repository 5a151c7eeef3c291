"""The train program: fine-tune a bi-encoder with ALC + TCM, measure coverage before and after, save (and
optionally push) the model folder. ``main`` reads as the story; every option is declared once
(:mod:`alc_hf.training.config`, :mod:`alc_hf.data.options`, :mod:`alc_hf.evaluation.options`).

    alc-hf train                                                  # built-in catalog, offline all-MiniLM-L6-v2
    alc-hf train recipes/catalog_alc.yaml --max_steps 60          # a config file; the command line overrides it
    accelerate launch -m alc_hf.training.train --output_dir outputs/run --per_device_train_batch_size 64
    accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16 -m alc_hf.training.train \
        --data xmc --data_dir data/LF-AmazonTitles-131K --output_dir outputs/lf131k
    alc-hf train --data tables --data_dir ../shared/data/walmart_amazon --text_fields brand title modelno
    alc-hf train --data pairs --data_dir data/pairs --query_column query --label_column product \
        --relevance_column label                                  # train.parquet, valid.csv, test.jsonl ...
    torchrun --nproc_per_node 2 -m alc_hf.training.train ...

Every SentenceTransformerTrainingArguments option is accepted too (``--max_steps``, ``--learning_rate``,
``--seed``, ``--push_to_hub``, ``--resume_from_checkpoint last``, ...), in a YAML/JSON file too. See docs/recipes.md.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from sentence_transformers import SentenceTransformerTrainer
from transformers import set_seed

from alc_hf.core.program import run_program
from alc_hf.data import load_evaluation_splits, load_evaluation_views, load_query_label_data, training_rows
from alc_hf.data.options import DataArguments
from alc_hf.evaluation import CoverageEvaluator
from alc_hf.evaluation.options import CalibrationArguments, RetrievalArguments, RiskArguments
from alc_hf.models import load_encoder
from alc_hf.models.verifier import initial_verifier
from alc_hf.training.batch_samplers import UniqueQueryLabelBatchSampler
from alc_hf.training.checkpoints import LossCheckpointCallback, checkpoint_to_resume, load_loss_checkpoint
from alc_hf.training.clustered_batches import ClusteredBatchSampler, ClusterRefreshCallback
from alc_hf.training.config import (
    ALCTrainingArguments,
    LossArguments,
    ModelArguments,
    TrainingDataArguments,
    VerifierArguments,
    parse_recipe_arguments,
)
from alc_hf.training.hub import check_hub_ready
from alc_hf.training.lora import add_lora_adapter, check_lora_available
from alc_hf.training.loss_composition import build_loss, find_pair_head, pair_head_learning_rates
from alc_hf.training.output_dir import check_output_dir, output_dir_lock, partial_model_dir, set_aside_earlier_run
from alc_hf.training.run import finish_run, run_coverage_evaluation
from alc_hf.training.verifier import train_verifier, verifier_pairs

# Every option of the program, in --help's order; the shared ones are declared in alc_hf.data.options and
# alc_hf.evaluation.options, which alc-hf evaluate and certify read too.
ARGUMENTS = (
    ModelArguments,
    DataArguments,
    TrainingDataArguments,
    LossArguments,
    RetrievalArguments,
    CalibrationArguments,
    RiskArguments,
    VerifierArguments,
    ALCTrainingArguments,
)


def main(argv: list[str] | None = None) -> None:
    options = parse_recipe_arguments(ARGUMENTS, argv)
    # One run at a time in an output folder: a second is refused before any work (the first process holds it).
    with output_dir_lock(options[-1].output_dir, enabled=options[-1].process_index == 0):
        train(*options)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    rows_args: TrainingDataArguments,
    loss_args: LossArguments,
    retrieval_args: RetrievalArguments,
    calibration_args: CalibrationArguments,
    risk_args: RiskArguments,
    verifier_args: VerifierArguments,
    args: ALCTrainingArguments,
) -> None:
    """Fine-tune, measure coverage before and after, save (and push) the model folder: the program's story."""
    # What could only fail at the end (the push, the verifier) or later (LoRA, the checkpoint) fails before any work.
    hub_repo_id = None
    if args.push_to_hub:
        hub_repo_id = check_hub_ready(args.hub_model_id, args.output_dir, args.hub_token)
        args.push_to_hub = False  # finish_run pushes the final model folder alone; the Trainer would push checkpoints
    if args.resume_from_checkpoint:
        args.resume_from_checkpoint = checkpoint_to_resume(args.resume_from_checkpoint, args.output_dir)
    replaced = check_output_dir(args.output_dir, args.overwrite_output_dir, args.resume_from_checkpoint)
    if model_args.lora_r:
        check_lora_available()
    verifier = None
    if verifier_args.train_verifier:
        verifier = initial_verifier(verifier_args.verifier_model, verifier_args.verifier_max_length, args.seed)

    # Load: the encoder (seeded first: the pair head is initialised with the loss), the training rows, the views.
    set_seed(args.seed)
    model = load_encoder(model_args.model_name_or_path)
    if model_args.max_seq_length:
        model.max_seq_length = model_args.max_seq_length
    if model_args.lora_r:
        lora = {key[len("lora_") :]: value for key, value in asdict(model_args).items() if key.startswith("lora_")}
        add_lora_adapter(model, model_args.model_name_or_path, **lora)
    train_data = load_query_label_data(**data_args.source())
    model.model_card_data.train_datasets = [{"name": train_data.source}]
    rows = training_rows(train_data, rows_args.num_hard_negatives, rows_args.max_positive_ids, seed=args.seed)
    if rows_args.max_train_samples is not None:
        rows = rows.select(range(min(rows_args.max_train_samples, len(rows))))
    views = load_evaluation_views(**data_args.source(), view=retrieval_args.evaluation_view)

    # Build: the output folder (the earlier run kept whole until this one's model is complete), the loss, the
    # batches, the trainer.
    with args.main_process_first(desc="setting the earlier run aside"):
        if args.process_index == 0:
            replacing = set_aside_earlier_run(args.output_dir, replaced)
            if replacing:
                print(replacing, flush=True)
    loss = build_loss(model, **asdict(loss_args), gather_across_devices=args.world_size > 1)
    args.learning_rate_mapping = {
        **pair_head_learning_rates(loss, args.pair_head_learning_rate),
        **(args.learning_rate_mapping or {}),
    }
    callbacks = [LossCheckpointCallback(loss, model)]
    batches = {"one_row_per_query": rows_args.one_row_per_query}
    if rows_args.batching == "clustered":
        args.batch_sampler = ClusteredBatchSampler.configure(cluster_size=rows_args.cluster_size, **batches)
        callbacks.append(ClusterRefreshCallback(refresh_at_start=True))
    else:
        args.batch_sampler = UniqueQueryLabelBatchSampler.configure(**batches)
    evaluation = {
        "target_precisions": calibration_args.target_precisions,
        "calibration_method": calibration_args.calibration_method,
        "delta": risk_args.delta,
        "batch_size": args.per_device_eval_batch_size,
        "show_progress_bar": not args.disable_tqdm,
        "name": data_args.data,
    }
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        loss=loss,
        evaluator=CoverageEvaluator(*views, pair_head=find_pair_head(loss), **evaluation),
        callbacks=callbacks,
    )

    # Evaluate, train, (train the verifier on the trained bi-encoder's mistakes), evaluate again.
    before = None
    if args.evaluate_before_training:
        before_options = {**evaluation, "name": f"{data_args.data}_before_training"}
        before = run_coverage_evaluation(trainer, CoverageEvaluator(*views, **before_options), "before training")
    if args.resume_from_checkpoint:
        if args.process_index == 0:
            print(f"Resuming from {args.resume_from_checkpoint}", flush=True)
        load_loss_checkpoint(loss, model, args.resume_from_checkpoint)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    if verifier is not None:
        pos_weight = verifier_args.verifier_pos_weight
        selection_pairs = None
        if verifier_args.verifier_select_on_calibration:
            calibration_data = load_evaluation_splits(**data_args.source())[0]
            selection_pairs = verifier_pairs(calibration_data, model, verifier_args.verifier_num_mined, seed=args.seed)
        verifier = train_verifier(
            verifier_pairs(
                train_data,
                model,
                verifier_args.verifier_num_mined,
                seed=args.seed,
                max_pairs=verifier_args.verifier_max_train_samples,
            ),
            verifier,
            partial_model_dir(args.output_dir) / "verifier",
            epochs=verifier_args.verifier_epochs,
            learning_rate=verifier_args.verifier_learning_rate,
            batch_size=verifier_args.verifier_batch_size,
            pos_weight=pos_weight if pos_weight == "balanced" else float(pos_weight),
            seed=args.seed,
            selection_pairs=selection_pairs,
            patience=verifier_args.verifier_patience,
            use_cpu=args.use_cpu,
            report_to="none",
            disable_tqdm=args.disable_tqdm,
            logging_steps=args.logging_steps,
        )
        trainer.evaluator = CoverageEvaluator(
            *views,
            pair_head=find_pair_head(loss),
            verifier=verifier,
            rerank_depth=retrieval_args.rerank_depth,
            **evaluation,
        )
    after = run_coverage_evaluation(trainer, trainer.evaluator, "after training")

    # Save the model folder (pair head, verifier, card, reports); push that folder alone when asked.
    finish_run(trainer, loss, before, after, hub_repo_id, base_model=model_args.model_name_or_path)


if __name__ == "__main__":  # accelerate launch -m alc_hf.training.train, python -m alc_hf.training.train
    sys.exit(run_program(main, "alc-hf train"))
