"""Fine-tune a bi-encoder with ALC + TCM, measure coverage before and after, save (and optionally push) the model.

    python recipes/train_alc.py                                   # built-in catalog, offline all-MiniLM-L6-v2
    python recipes/train_alc.py recipes/catalog_alc.yaml --max_steps 60   # a config file; the command line overrides it
    accelerate launch recipes/train_alc.py --output_dir outputs/run --per_device_train_batch_size 64
    accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16 recipes/train_alc.py \
        --data xmc --data_dir data/LF-AmazonTitles-131K --output_dir outputs/lf131k
    python recipes/train_alc.py --data tables --data_dir ../shared/data/walmart_amazon --text_fields brand title modelno
    python recipes/train_alc.py --data beir --data_dir data/scifact            # corpus.jsonl, queries.jsonl, qrels/
    python recipes/train_alc.py --data pairs --data_dir data/pairs --query_column query --label_column product \
        --relevance_column label                                  # train.parquet, valid.csv, test.jsonl ...
    torchrun --nproc_per_node 2 recipes/train_alc.py ...

Every option lives in ``alc_hf.training.config`` (and every SentenceTransformerTrainingArguments option is accepted:
``--max_steps``, ``--learning_rate``, ``--seed``, ``--push_to_hub``, ``--resume_from_checkpoint last``, ...), in a
YAML/JSON file too. See docs/recipes.md.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from sentence_transformers import SentenceTransformerTrainer
from transformers import set_seed

from alc_hf.command_line import run_program
from alc_hf.data import (
    ClusteredBatchSampler,
    ClusterRefreshCallback,
    UniqueQueryLabelBatchSampler,
    load_evaluation_splits,
    load_evaluation_views,
    load_query_label_data,
    training_rows,
)
from alc_hf.evaluation import CoverageEvaluator
from alc_hf.models import load_encoder
from alc_hf.training.checkpoints import LossCheckpointCallback, checkpoint_to_resume, load_loss_checkpoint
from alc_hf.training.config import (
    ALCTrainingArguments,
    DataArguments,
    EvaluationArguments,
    LossArguments,
    ModelArguments,
    VerifierArguments,
    build_loss,
    find_pair_head,
    pair_head_learning_rates,
    parse_recipe_arguments,
)
from alc_hf.training.hub import check_hub_ready
from alc_hf.training.lora import add_lora_adapter, check_lora_available
from alc_hf.training.output_dir import check_output_dir, output_dir_lock, partial_model_dir, set_aside_earlier_run
from alc_hf.training.run import finish_run, run_coverage_evaluation
from alc_hf.verifier import initial_verifier, train_verifier, verifier_pairs

ARGUMENTS = (ModelArguments, DataArguments, LossArguments, EvaluationArguments, VerifierArguments, ALCTrainingArguments)


def main(argv: list[str] | None = None) -> None:
    options = parse_recipe_arguments(ARGUMENTS, argv)
    # One run at a time in an output folder: a second is refused before any work (the first process holds it).
    with output_dir_lock(options[-1].output_dir, enabled=options[-1].process_index == 0):
        train(*options)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    loss_args: LossArguments,
    eval_args: EvaluationArguments,
    verifier_args: VerifierArguments,
    args: ALCTrainingArguments,
) -> None:
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
    rows = training_rows(train_data, data_args.num_hard_negatives, data_args.max_positive_ids, seed=args.seed)
    if data_args.max_train_samples is not None:
        rows = rows.select(range(min(data_args.max_train_samples, len(rows))))
    views = load_evaluation_views(**data_args.source(), view=eval_args.evaluation_view)

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
    batches = {"one_row_per_query": data_args.one_row_per_query}
    if data_args.batching == "clustered":
        args.batch_sampler = ClusteredBatchSampler.configure(cluster_size=data_args.cluster_size, **batches)
        callbacks.append(ClusterRefreshCallback(refresh_at_start=True))
    else:
        args.batch_sampler = UniqueQueryLabelBatchSampler.configure(**batches)
    evaluation = {
        "target_precisions": eval_args.target_precisions,
        "calibration_method": eval_args.calibration_method,
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
    if eval_args.evaluate_before_training:
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
            rerank_depth=verifier_args.rerank_depth,
            **evaluation,
        )
    after = run_coverage_evaluation(trainer, trainer.evaluator, "after training")

    # Save the model folder (pair head, verifier, card, reports); push that folder alone when asked.
    finish_run(trainer, loss, before, after, hub_repo_id, base_model=model_args.model_name_or_path)


if __name__ == "__main__":
    sys.exit(run_program(main, "train_alc.py"))
