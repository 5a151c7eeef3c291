"""Accept with a verifier: the bi-encoder retrieves, a cross-encoder decides. How much coverage, at what cost?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/verifier_quality.py --dataset walmart_amazon
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/verifier_quality.py --dataset wdc --seeds 0 --resume

The bi-encoders come from ``table_quality.py --keep_models`` (same data, budget and seeds as the quality table): those
missing from ``outputs/verifier_quality/<dataset>_bi_encoders_models/`` are trained first, with their own table in
``<dataset>_bi_encoders.json``.

For each seed, one cross-encoder verifier is trained from all-MiniLM-L6-v2 (a new classification head; with
``--start_from mine_with``, from that seed's mining bi-encoder) on the train split's positives, its labelled
negatives and ``--num_mined`` negatives per query mined with the ``--mine_with`` bi-encoder of that seed
(``alc_hf.training.verifier``; by default the recommended configuration). Every bi-encoder of ``--bi_encoders``
trained by
``table_quality.py --keep_models`` (same data, budget and seeds) is then evaluated with that verifier behind it, in
the block view, thresholds calibrated on valid and applied to test, by every accept score the pair allows:
``cosine``; the ALC pair head and the combined score when the bi-encoder has one; ``verifier`` (its probability for
the top-1), ``verifier_rerank`` (its top-1 after it re-ranks the top ``--rerank_depth``) and ``verifier_combined``
(a regression on the cosine and its logit, fitted on valid). Each
figure comes with the precision the threshold really reaches on test and the decision's cost in ms per query,
measured in the same run. The JSON is rewritten after each seed; ``--resume`` skips the seeds it holds and continues
a verifier's training from its newest checkpoint (one every ``--save_steps`` in
``outputs/verifier_quality/<dataset>_verifiers/seed<N>/``, removed once the seed is in the JSON).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import shutil
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import table_quality
from sentence_transformers import SentenceTransformer
from transformers.trainer_utils import get_last_checkpoint

from alc_hf.core.files import write_atomically
from alc_hf.data import read_product_tables
from alc_hf.evaluation import CoverageEvaluator
from alc_hf.losses.pair_head import saved_pair_head
from alc_hf.models.verifier import DEFAULT_MAX_LENGTH
from alc_hf.training.verifier import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MAX_EPOCHS,
    DEFAULT_NUM_MINED,
    DEFAULT_PATIENCE,
    DEFAULT_POS_WEIGHT,
    train_verifier,
    truncated_pair_share,
    verifier_pairs,
)
from alc_hf.training.verifier import (
    SELECTION_FILE as VERIFIER_SELECTION_FILE,
)

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (*table_quality.COLUMNS, ("cost_ms_per_query", "ms/query"))
RESULT_SETTINGS = (
    "data_dir",
    "text_fields",
    "models_from",
    "num_mined",
    "epochs",
    "learning_rate",
    "pos_weight",
    "batch_size",
    "max_length",
    "rerank_depth",
    "mine_with",
    "select_on_valid",
    "patience",
    "both_orders",
    "start_from",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=table_quality.DATASETS, required=True)
    parser.add_argument(
        "--bi_encoders",
        nargs="+",
        default=["mnrl_random", "alc_tcm_clustered"],
        help="table_quality models (<arm>_<batching>) to put the verifier behind",
    )
    parser.add_argument(
        "--mine_with", default="alc_tcm_clustered", help="the bi-encoder whose top-k gives the mined negatives"
    )
    parser.add_argument(
        "--start_from",
        choices=("all-MiniLM-L6-v2", "mine_with"),
        default="all-MiniLM-L6-v2",
        help="the verifier's starting encoder (a new head on it): all-MiniLM-L6-v2, or that seed's --mine_with "
        "bi-encoder, already fine-tuned on the train split",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--num_mined", type=int, default=DEFAULT_NUM_MINED, help="negatives mined per query")
    parser.add_argument(
        "--epochs",
        type=float,
        help=f"(default: {DEFAULT_EPOCHS}; the most, with --select_on_valid: {DEFAULT_MAX_EPOCHS})",
    )
    parser.add_argument(
        "--select_on_valid",
        action="store_true",
        help="keep the epoch with the best pairwise F1 on valid's labelled pairs, stop after --patience without one",
    )
    parser.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    parser.add_argument("--both_orders", action="store_true", help="train on each pair in both orders")
    parser.add_argument("--learning_rate", type=float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument("--pos_weight", default=str(DEFAULT_POS_WEIGHT), help="a number or 'balanced'")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--max_length", type=int, default=DEFAULT_MAX_LENGTH)
    parser.add_argument("--rerank_depth", type=int, default=5)
    parser.add_argument("--eval_batch_size", type=int, default=128)
    parser.add_argument("--save_steps", type=int, default=250, help="a verifier checkpoint every this many steps")
    parser.add_argument("--output", type=Path, help="default: outputs/verifier_quality/<dataset>.json")
    parser.add_argument(
        "--bi_encoder_results",
        type=Path,
        help="table_quality's JSON of the bi-encoders, their models beside it in <stem>_models/ (default: "
        "<output stem>_bi_encoders.json): another output can reuse a run's bi-encoders",
    )
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    preset = table_quality.DATASETS[args.dataset]
    args.data_dir, args.text_fields = preset.data_dir, preset.text_fields
    args.output = args.output or REPO / "outputs" / "verifier_quality" / f"{args.dataset}.json"
    args.bi_encoder_results = args.bi_encoder_results or args.output.with_name(f"{args.output.stem}_bi_encoders.json")
    args.models_from = args.bi_encoder_results.with_name(f"{args.bi_encoder_results.stem}_models")
    args.verifiers_dir = args.output.with_name(f"{args.output.stem}_verifiers")
    args.pos_weight = args.pos_weight if args.pos_weight == "balanced" else float(args.pos_weight)
    args.epochs = args.epochs or (DEFAULT_MAX_EPOCHS if args.select_on_valid else DEFAULT_EPOCHS)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    return args


def settings_of(args: argparse.Namespace) -> dict:
    return {
        "dataset": args.dataset,
        "data_dir": str(args.data_dir),
        "text_fields": list(args.text_fields),
        "models_from": str(args.models_from),
        "num_mined": args.num_mined,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "pos_weight": args.pos_weight,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "rerank_depth": args.rerank_depth,
        "mine_with": args.mine_with,
        "select_on_valid": args.select_on_valid,
        "patience": args.patience if args.select_on_valid else None,
        "both_orders": args.both_orders,
        # None for all-MiniLM-L6-v2: the runs recorded before the option started there.
        "start_from": None if args.start_from == "all-MiniLM-L6-v2" else args.start_from,
        "split_for_selection": "test",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*Token indices sequence length.*")
    settings = settings_of(args)
    runs: list[dict] = []
    if args.output.exists() and not args.overwrite:
        if not args.resume:
            raise SystemExit(f"{args.output} exists: pass --resume to continue it or --overwrite to replace it")
        previous = json.loads(args.output.read_text())
        changed = {
            key: previous["settings"].get(key)
            for key in RESULT_SETTINGS
            if previous["settings"].get(key) != settings[key]
        }
        if changed:
            raise SystemExit(f"cannot resume {args.output}: settings changed: {changed}")
        runs = previous["runs"]
    done = {run["seed"] for run in runs}
    todo = [seed for seed in args.seeds if seed not in done]
    resume_from = {seed: unfinished_verifier(args.verifiers_dir / f"seed{seed}", args) for seed in todo}
    bi_encoders = list(dict.fromkeys([args.mine_with, *args.bi_encoders]))
    for name in bi_encoders:
        table_quality.train_missing_models(args.dataset, name, todo, args.bi_encoder_results)
    train = read_product_tables(args.data_dir, split="train", text_fields=args.text_fields)
    selection_pairs = None
    if args.select_on_valid:
        selection_pairs = verifier_pairs(
            read_product_tables(args.data_dir, split="valid", text_fields=args.text_fields)
        )
    views = table_quality.load_views(args.data_dir, args.text_fields, "test")
    print(
        f"{args.dataset}: seeds {todo} to do; each verifier mined with {args.mine_with}, evaluated behind "
        f"{args.bi_encoders}",
        flush=True,
    )

    for seed in todo:
        print(f"\nseed {seed}: verifier on negatives mined with {args.mine_with}", flush=True)
        output_dir = args.verifiers_dir / f"seed{seed}"
        started = time.perf_counter()
        miner = args.models_from / f"{args.mine_with}_seed{seed}"
        pairs = verifier_pairs(
            train,
            SentenceTransformer(str(miner)),
            args.num_mined,
            seed=seed,
            both_orders=args.both_orders,
        )
        # Chosen on valid, a verifier keeps a checkpoint each epoch (that --resume continues); else every --save_steps.
        checkpoints = {} if args.select_on_valid else {"save_strategy": "steps", "save_steps": args.save_steps}
        verifier = train_verifier(
            pairs,
            **({} if args.start_from == "all-MiniLM-L6-v2" else {"model": miner}),
            output_dir=output_dir,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            pos_weight=args.pos_weight,
            max_length=args.max_length,
            seed=seed,
            resume_from_checkpoint=resume_from[seed],
            selection_pairs=selection_pairs,
            patience=args.patience,
            save_total_limit=1,
            **checkpoints,
            logging_steps=100,
            report_to="none",
            disable_tqdm=True,
        )
        training = {
            "pairs": len(pairs),
            "positive_pairs": int(sum(score == 1.0 for score in pairs["score"])),
            # When resumed, only this process's share: the mining and the steps after the checkpoint.
            "train_seconds": time.perf_counter() - started,
            "resumed_from": None if resume_from[seed] is None else Path(resume_from[seed]).name,
            "truncated_share": truncated_pair_share(verifier, pairs),
        }
        if args.select_on_valid:
            training["selection"] = json.loads((output_dir / VERIFIER_SELECTION_FILE).read_text())
        resumed = "" if resume_from[seed] is None else f" (resumed from {training['resumed_from']})"
        print(
            f"  {training['pairs']} pairs ({training['positive_pairs']} positive, {training['truncated_share']:.1%} "
            f"cut at max_length {args.max_length}), mined and trained in {training['train_seconds'] / 60:.1f} min"
            f"{resumed}",
            flush=True,
        )
        for name in args.bi_encoders:
            folder = args.models_from / f"{name}_seed{seed}"
            bi_encoder = SentenceTransformer(str(folder))
            bi_encoder.eval()
            evaluator = CoverageEvaluator(
                *views,
                target_precisions=table_quality.TARGET_PRECISIONS,
                precision_at_k=table_quality.PRECISION_AT_K,
                batch_size=args.eval_batch_size,
                show_progress_bar=False,
                pair_head=saved_pair_head(folder),
                verifier=verifier,
                rerank_depth=args.rerank_depth,
            )
            record: dict[str, Any] = {"arm": name, "batching": None, "seed": seed, "verifier": training}
            record["accept_scores"] = {}
            print(f"  behind {name}:", flush=True)
            for accept_score, report in evaluator.compute_reports(bi_encoder).items():
                entry = table_quality.report_record(report)
                entry["metrics"]["cost_ms_per_query"] = report.cost_ms_per_query
                record["accept_scores"][accept_score] = entry
                m = entry["metrics"]
                print(
                    f"    {accept_score:16s} P@1 {table_quality.value(m['p@1'])}  C@1@90 "
                    f"{table_quality.value(m['c@1_p90'])} (prec. {table_quality.value(m['c@1_p90_precision'])})  "
                    f"C@1@95 {table_quality.value(m['c@1_p95'])} (prec. {table_quality.value(m['c@1_p95_precision'])})"
                    f"  {report.cost_ms_per_query:.2f} ms/query",
                    flush=True,
                )
            record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            runs = [run for run in runs if (run["arm"], run["seed"]) != (name, seed)] + [record]
            del bi_encoder, evaluator
            gc.collect()
        results = {"settings": settings, "runs": runs, "summary": table_quality.summarise(runs)}
        write_atomically(args.output, json.dumps(results, indent=1, allow_nan=False).encode())
        shutil.rmtree(output_dir)
        del verifier
        gc.collect()

    results = json.loads(args.output.read_text())
    print(f"\n### {args.dataset}: block view, test (thresholds calibrated on valid; mean ± std over seeds)\n")
    print("| bi-encoder [accept score] | seeds | " + " | ".join(header for _, header in COLUMNS) + " | × cosine |")
    print("|---|---|" + "---|" * (len(COLUMNS) + 1))
    ratios = cost_ratios(results["runs"])
    for row, entry in results["summary"].items():
        figures = " | ".join(table_quality.cell(entry["figures"].get(metric)) for metric, _ in COLUMNS)
        cost = f"{min(ratios[row]):.1f}–{max(ratios[row]):.1f}×"
        print(f"| {row} | {' '.join(map(str, entry['seeds']))} | {figures} | {cost} |")
    print(f"\nevery figure: {args.output}")
    return 0


def unfinished_verifier(output_dir: Path, args: argparse.Namespace) -> str | None:
    """The newest checkpoint of a seed's verifier that an earlier run left in ``output_dir`` to continue from
    (``--resume``), or None to start afresh (nothing there, or ``--overwrite``)."""
    if not output_dir.exists():
        return None
    if args.overwrite:
        shutil.rmtree(output_dir)
        return None
    if not args.resume:
        raise SystemExit(
            f"{output_dir} holds an unfinished verifier: pass --resume to continue it or --overwrite to start afresh"
        )
    return get_last_checkpoint(str(output_dir))


def cost_ratios(runs: list[dict]) -> dict[str, list[float]]:
    """Per table row, each seed's cost per query over the cosine route's in the same run (same bi-encoder, same
    seed): speeds compared as ratios measured together, not as absolute times."""
    ratios: dict[str, list[float]] = {}
    for run in runs:
        cosine = run["accept_scores"]["cosine"]["metrics"]["cost_ms_per_query"]
        for accept_score, entry in run["accept_scores"].items():
            row = table_quality.row_name(run["arm"], run["batching"], accept_score)
            ratios.setdefault(row, []).append(entry["metrics"]["cost_ms_per_query"] / cosine)
    return ratios


if __name__ == "__main__":
    sys.exit(main())
