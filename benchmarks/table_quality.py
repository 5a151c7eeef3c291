"""Coverage on real product-matching tables at a real training budget: which loss and which batches buy it?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/table_quality.py --dataset wdc              # main arms, seeds 0-2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/table_quality.py --dataset walmart_amazon
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/table_quality.py --dataset wdc --arms softmax_tcm mnrl_alc_tcm \
        --seeds 0                                                                           # further arms
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/table_quality.py --dataset wdc --resume     # continue a run

Any DeepMatcher-layout folder works with ``--data_dir DIR --text_fields brand title ...``. Every arm fine-tunes
all-MiniLM-L6-v2 (offline) on the train pairs with one labelled hard negative (``label == 0``) per row, for the
dataset's budget in epochs (WDC: one epoch; Walmart-Amazon: four: what a user would train), and is evaluated in the
block view: each query against its labelled candidates, thresholds calibrated on valid and applied to test, with
the precision each threshold really reaches on test. ALC arms are also evaluated with the pair head and the
combined score as the accept score (``alc_hf.evaluation.accept``).

* arms: ``off_the_shelf``; ``mnrl`` (sentence-transformers' MultipleNegativesRankingLoss: what users have today),
  ``mnrl_tcm``, ``alc_tcm`` (the library's ``TCMLoss(ALCLoss(softmax))``, its defaults), MNRL with
  sentence-transformers' own hard-negative weighting (``mnrl_in_batch_hardness``: ``hardness_mode=
  "in_batch_negatives"``, strength 9; ``mnrl_hard_negative_hardness``: ``"hard_negatives"``, strength 5), and
  further arms (``softmax``, ``softmax_tcm``, ``mnrl_alc_tcm``, ``triplet``, ``triplet_tcm``, ``triplet_alc_tcm``).
* batching: ``random`` (UniqueQueryLabelBatchSampler) and ``clustered`` (ClusteredBatchSampler: rows whose queries
  the current encoder places close together share a batch, refreshed every epoch). Every arm of a seed and
  batching sees the same rows in the same first-epoch order.
* the mean cosine of each query's hardest in-batch negative (off-the-shelf embeddings, first epoch), random vs
  clustered, is measured once per seed.

Evaluation is ``CoverageEvaluator(valid, test, pair_head=...)``, nothing re-implemented. ``--split_for_selection
valid`` (ablations) never reads test.csv: valid is split by query (fixed seed) into a calibration half and a held-out
half. The JSON (``--output``) holds every figure; it is rewritten atomically after each run, ``--resume`` skips the
runs it holds (their settings must match), and the tables are printed from it. Trained models are kept under
``<output stem>_models/`` (``--keep_models``) for the verifier benchmark.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from torch import nn
from transformers import TrainerCallback, set_seed

from alc_hf.core.clustering import batch_hardness
from alc_hf.core.files import write_atomically
from alc_hf.core.metrics import finite_or_none, target_name
from alc_hf.data import (
    EvaluationView,
    QueryLabelData,
    evaluation_view,
    read_product_tables,
    training_rows,
)
from alc_hf.evaluation import CoverageEvaluator, CoverageReport
from alc_hf.losses.base import loss_chain
from alc_hf.models import DEFAULT_MODEL, load_encoder
from alc_hf.training import ClusteredBatchSampler, ClusterRefreshCallback, UniqueQueryLabelBatchSampler
from alc_hf.training.loss_composition import build_loss, find_pair_head, pair_head_learning_rates

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class TableDataset:
    """A DeepMatcher-layout folder and the training budget a user would give it."""

    data_dir: Path
    text_fields: tuple[str, ...]
    epochs: float
    # The smallest multiple of 16 that truncates under 2% of the texts on either side (printed by every run).
    max_seq_length: int


DATASETS = {
    "wdc": TableDataset(SHARED_DATA / "wdc_block_small", ("brand", "title"), 1.0, 48),
    "walmart_amazon": TableDataset(SHARED_DATA / "walmart_amazon", ("brand", "title", "modelno"), 4.0, 64),
}
OFF_THE_SHELF = "off_the_shelf"
# arm -> (backbone, ALC, TCM)
ARMS: dict[str, tuple[str, bool, bool]] = {
    "mnrl": ("mnrl", False, False),
    "mnrl_in_batch_hardness": ("mnrl_in_batch_hardness", False, False),
    "mnrl_hard_negative_hardness": ("mnrl_hard_negative_hardness", False, False),
    "mnrl_hard_negative_hardness_tcm": ("mnrl_hard_negative_hardness", False, True),
    "mnrl_tcm": ("mnrl", False, True),
    "alc_tcm": ("softmax", True, True),
    "softmax": ("softmax", False, False),
    "softmax_tcm": ("softmax", False, True),
    "mnrl_alc_tcm": ("mnrl", True, True),
    "triplet": ("triplet", False, False),
    "triplet_tcm": ("triplet", False, True),
    "triplet_alc_tcm": ("triplet", True, True),
}
ALL_ARMS = (OFF_THE_SHELF, *ARMS)
MAIN_ARMS = (OFF_THE_SHELF, "mnrl", "mnrl_tcm", "alc_tcm")
BATCHING = ("random", "clustered")
# ALCLoss / TCMLoss / sampler options the command line can set (ablations); unset, the library's defaults apply.
LOSS_OPTIONS = {
    "ql_weight": (float, "ALC β1, weight of L_ql"),
    "qb_weight": (float, "ALC β2, weight of L_qb"),
    "num_negatives": (int, "ALC k, hardest in-batch negatives for L_qb"),
    "pair_head_hidden_dim": (int, "hidden width of the pair head (0: a single Linear(4d, 1))"),
    "head_warmup_steps": (int, "steps during which the pair head learns on detached embeddings"),
    "pos_margin": (float, "TCM m+"),
    "neg_margin": (float, "TCM m-"),
}
TARGET_PRECISIONS = (0.9, 0.95)
PRECISION_AT_K = (1, 5)
SELECTION_SEED = 0
COLUMNS = (
    ("valid_c@1_p90", "valid C@1@90"),
    ("p@1", "P@1"),
    ("c@1_p90", "C@1@90 cal."),
    ("c@1_p90_precision", "prec. @90"),
    ("c@1_p90_oracle", "C@1@90 oracle"),
    ("c@1_p95", "C@1@95 cal."),
    ("c@1_p95_precision", "prec. @95"),
    ("aupc", "AUPC"),
    ("pairwise_f1", "pair F1"),
)
# Settings that change the figures: a run in the JSON is reused by --resume only when they agree.
RESULT_SETTINGS = (
    "model",
    "data_dir",
    "text_fields",
    "epochs",
    "batch_size",
    "learning_rate",
    "pair_head_learning_rate",
    "warmup_ratio",
    "num_hard_negatives",
    "max_seq_length",
    "cluster_size",
    "split_for_selection",
    "loss_options",
)


# ----------------------------------------------------------------------------------------------------------------
# data


def load_views(
    data_dir: Path, text_fields: tuple[str, ...], split_for_selection: str
) -> tuple[EvaluationView, EvaluationView]:
    """Block views ``(calibration, test)``: valid -> test, or (selection) one half of valid -> the other half."""

    def read(split: str) -> QueryLabelData:
        return read_product_tables(data_dir, split=split, text_fields=text_fields)

    if split_for_selection == "test":
        calibration, test = read("valid"), read("test")
    else:
        valid = read("valid")
        queries = list(dict.fromkeys(valid.queries))
        order = np.random.default_rng(SELECTION_SEED).permutation(len(queries))
        first_half = {queries[i] for i in order[: len(queries) // 2]}
        in_first = np.array([query in first_half for query in valid.queries], dtype=bool)
        calibration = valid.select_queries(in_first, source="valid half 1")
        test = valid.select_queries(~in_first, source="valid half 2")
    return evaluation_view(calibration, candidates="labelled"), evaluation_view(test, candidates="labelled")


def train_missing_models(dataset: str, model: str, seeds: list[int], results: Path) -> None:
    """Train, with ``--keep_models``, the seeds of ``model`` (``<arm>_<batching>``) whose folder is missing from
    ``<results stem>_models/``, recording their figures in ``results``: the models the other benchmarks share."""
    arm, batching = model.rsplit("_", 1)
    models_dir = results.with_name(results.stem + "_models")
    untrained = [seed for seed in seeds if not (models_dir / f"{model}_seed{seed}").is_dir()]
    if untrained:
        print(f"training the {model} bi-encoders of seeds {untrained} (table_quality.py --keep_models)", flush=True)
        main(
            ["--dataset", dataset, "--arms", arm, "--batching", batching, "--keep_models", "--resume"]
            + ["--seeds", *map(str, untrained), "--output", str(results)]
        )


def truncated_share(model: SentenceTransformer, texts: list[str], max_seq_length: int) -> float:
    """The share of ``texts`` longer than ``max_seq_length`` tokens (special tokens included)."""
    lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
    return float(np.mean(np.array(lengths) > max_seq_length))


# ----------------------------------------------------------------------------------------------------------------
# training


# sentence-transformers 6.2's weighting of hard negatives (`hardness_strength * stop_grad(cos)` added to negative
# logits), at the strengths its sources use: in-batch negatives 9 (Lan et al. 2025), the hard-negative columns 5
# (EmbeddingGemma). The baseline a user who wants more weight on the hardest negatives picks today.
MNRL_BACKBONES: dict[str, dict[str, Any]] = {
    "mnrl": {},
    "mnrl_in_batch_hardness": {"hardness_mode": "in_batch_negatives", "hardness_strength": 9.0},
    "mnrl_hard_negative_hardness": {"hardness_mode": "hard_negatives", "hardness_strength": 5.0},
}


def build_arm_loss(model: SentenceTransformer, arm: str, loss_options: dict[str, float]) -> nn.Module:
    backbone, alc, tcm = ARMS[arm]
    if backbone in MNRL_BACKBONES:
        return build_loss(model, "mnrl", alc=alc, tcm=tcm, **MNRL_BACKBONES[backbone], **loss_options)
    return build_loss(model, backbone, alc=alc, tcm=tcm, **loss_options)


def describe_loss_chain(loss: nn.Module) -> list[dict[str, Any]]:
    return [{"loss": type(part).__name__, **part.get_config_dict()} for part in loss_chain(loss)]


class Progress(TrainerCallback):
    """Times every step and prints the logged loss parts with the recent seconds per step and an ETA."""

    def __init__(self) -> None:
        self.step_seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.step_seconds.append(time.perf_counter() - self._start)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        parts = "  ".join(f"{key} {logs[key]:.4f}" for key in ("loss", "base", "ql", "qb", "tcm") if key in logs)
        recent = statistics.mean(self.step_seconds[-args.logging_steps :])
        left = (state.max_steps - state.global_step) * recent
        print(
            f"    step {state.global_step}/{state.max_steps}  {parts}  {recent:.2f} s/step, {left / 60:.1f} min left",
            flush=True,
        )


def batching_arguments(batching: str, args: argparse.Namespace) -> tuple[Any, list[TrainerCallback]]:
    """The trainer's ``batch_sampler`` and the callbacks it needs."""
    if batching == "random":
        return UniqueQueryLabelBatchSampler.configure(), []
    sampler = ClusteredBatchSampler.configure(cluster_size=args.cluster_size)
    return sampler, [ClusterRefreshCallback(refresh_at_start=True, batch_size=args.eval_batch_size)]


def train(
    arm: str, batching: str, seed: int, train_data: QueryLabelData, args: argparse.Namespace, save_to: Path | None
) -> tuple[SentenceTransformer, nn.Module, dict]:
    set_seed(seed)  # before the loss: the pair head is initialised when it is built
    model = load_encoder(args.model)
    model.max_seq_length = args.max_seq_length
    rows = training_rows(train_data, num_hard_negatives=args.num_hard_negatives, seed=seed)
    loss = build_arm_loss(model, arm, loss_options(args))
    sampler, callbacks = batching_arguments(batching, args)
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="table_quality_") as output_dir:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=output_dir,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_ratio=args.warmup_ratio,
            seed=seed,
            learning_rate_mapping=pair_head_learning_rates(loss, args.pair_head_learning_rate),
            batch_sampler=sampler,
            logging_steps=args.logging_steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args, train_dataset=rows, loss=loss, callbacks=[*callbacks, progress]
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    timed = progress.step_seconds[1:] or progress.step_seconds  # the first step warms up
    info = {
        "train_seconds": seconds,
        "steps": len(progress.step_seconds),
        "seconds_per_step_median": statistics.median(timed),
        "rows": len(rows),
        "log": [entry for entry in trainer.state.log_history if "loss" in entry],
        "loss": describe_loss_chain(loss),
    }
    if save_to is not None:
        model.save_pretrained(str(save_to))
        pair_head = find_pair_head(loss)
        if pair_head is not None:
            pair_head.save_pretrained(save_to / "pair_head")
        info["saved_to"] = str(save_to)
    del trainer
    return model, loss, info


def loss_options(args: argparse.Namespace) -> dict[str, float]:
    return {name: getattr(args, name) for name in LOSS_OPTIONS if getattr(args, name) is not None}


def hardness(model: SentenceTransformer, train_data: QueryLabelData, seed: int, args: argparse.Namespace) -> dict:
    """The mean cosine of each query's hardest in-batch negative (among the other rows' positives) in the first
    epoch's batches, random vs clustered, with this model's embeddings (the off-the-shelf model: what the first
    epoch's clusters are built from)."""
    rows = training_rows(train_data, num_hard_negatives=args.num_hard_negatives, seed=seed)
    encode = {"batch_size": args.eval_batch_size, "convert_to_numpy": True, "normalize_embeddings": True}
    queries = model.encode_query(rows["anchor"], **encode)
    positives = model.encode_document(rows["positive"], **encode)
    label = np.asarray(rows["label"])
    random_batches = UniqueQueryLabelBatchSampler(rows, batch_size=args.batch_size, drop_last=False, seed=seed)
    clustered = ClusteredBatchSampler(
        rows, batch_size=args.batch_size, drop_last=False, seed=seed, cluster_size=args.cluster_size
    )
    clustered.set_embeddings(model.encode_query(clustered.embedding_texts(), **encode))
    return {
        name: batch_hardness(sampler.plan(0), queries, positives, label[:, 0], label[:, 1 + args.num_hard_negatives :])
        for name, sampler in (("random", random_batches), ("clustered", clustered))
    }


# ----------------------------------------------------------------------------------------------------------------
# results


def evaluate(
    model: SentenceTransformer, pair_head: Any, views: tuple[EvaluationView, EvaluationView], args: argparse.Namespace
) -> dict[str, CoverageReport]:
    evaluator = CoverageEvaluator(
        *views,
        target_precisions=TARGET_PRECISIONS,
        precision_at_k=PRECISION_AT_K,
        batch_size=args.eval_batch_size,
        show_progress_bar=False,
        pair_head=pair_head,
    )
    return evaluator.compute_reports(model)


def report_record(report: CoverageReport) -> dict:
    full = report.to_dict()
    return {
        "metrics": full["metrics"],
        "report": full,
        # for precision-coverage plots: every test query's top-1 accept score and whether it is right
        "test_top1": {
            "scores": [finite_or_none(float(v)) for v in report.test_top1[0]],
            "correct": [bool(v) for v in report.test_top1[1]],
        },
    }


def row_name(arm: str, batching: str | None, accept_score: str) -> str:
    name = arm if batching is None else f"{arm} / {batching}"
    return name if accept_score == "cosine" else f"{name} [{accept_score} accept]"


def valid_coverage(report: dict) -> dict[str, float]:
    """``valid_c@1_pXX``: the share of the calibration split (valid) that the threshold calibrated there accepts, 0
    where no threshold reaches XX% on it. A configuration is chosen on this figure, never on test's."""
    return {
        f"valid_c@1_{target_name(entry['target_precision'])}": entry["calibration"]["coverage"]
        if entry["reachable"]
        else 0.0
        for entry in report["coverage_at"]["1"]
    }


def summarise(runs: list[dict]) -> dict:
    """Per table row (arm, batching, accept score): mean, standard deviation (ddof 1) and count of every metric
    over seeds; NaN / None figures are left out of the mean and counted in ``missing``."""
    grouped: dict[str, list[dict]] = {}
    for run in runs:
        for accept_score, record in run["accept_scores"].items():
            metrics = {**valid_coverage(record["report"]), **record["metrics"]}
            grouped.setdefault(row_name(run["arm"], run["batching"], accept_score), []).append(
                {"seed": run["seed"], "metrics": metrics}
            )
    summary = {}
    for name, entries in grouped.items():
        figures = {}
        for metric in entries[0]["metrics"]:
            values = [entry["metrics"][metric] for entry in entries]
            present = [value for value in values if value is not None]
            figures[metric] = {
                "mean": statistics.mean(present) if present else None,
                "std": statistics.stdev(present) if len(present) > 1 else None,
                "n": len(present),
                "missing": len(values) - len(present),
            }
        summary[name] = {"seeds": [entry["seed"] for entry in entries], "figures": figures}
    return summary


def cell(figure: dict | None) -> str:
    if figure is None or figure["mean"] is None:
        return "n/a"
    text = f"{figure['mean']:.3f}"
    if figure["std"] is not None:
        text += f" ± {figure['std']:.3f}"
    if figure["missing"]:
        text += f" ({figure['n']}/{figure['n'] + figure['missing']})"
    return text


def tables(results: dict) -> str:
    """The markdown table of every row, and the batch hardness, printed from the JSON."""
    settings = results["settings"]
    test = "held-out valid half" if settings["split_for_selection"] == "valid" else "test"
    lines = [
        f"### {settings['dataset']}: block view, {test} (thresholds calibrated on "
        f"{'the other valid half' if test != 'test' else 'valid'}; mean ± std over seeds)",
        "",
        "| arm / batching | seeds | " + " | ".join(header for _, header in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    # Recomputed from the runs, so a JSON written before a column was added still prints it.
    for name, entry in summarise(results["runs"]).items():
        seeds = "-" if name.startswith(OFF_THE_SHELF) else " ".join(str(seed) for seed in entry["seeds"])
        figures = " | ".join(cell(entry["figures"].get(metric)) for metric, _ in COLUMNS)
        lines.append(f"| {name} | {seeds} | {figures} |")
    if results.get("hardness"):
        lines += [
            "",
            "Mean cosine of each query's hardest in-batch negative (first epoch, off-the-shelf embeddings):",
            "",
            "| seed | random | clustered |",
            "|---|---|---|",
        ]
        for seed, figures in sorted(results["hardness"].items()):
            lines.append(f"| {seed} | {figures['random']:.3f} | {figures['clustered']:.3f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, required=True, help="a preset: folder, fields, budget")
    parser.add_argument("--data_dir", type=Path, help="another DeepMatcher-layout folder (with --text_fields)")
    parser.add_argument("--text_fields", nargs="+", help="table columns joined into each text")
    parser.add_argument("--epochs", type=float, help="training epochs (default: the dataset's budget)")
    parser.add_argument("--max_seq_length", type=int, help="(default: the dataset's)")
    parser.add_argument("--arms", nargs="+", choices=ALL_ARMS, default=list(MAIN_ARMS))
    parser.add_argument("--batching", nargs="+", choices=BATCHING, default=list(BATCHING))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5, help="the encoder's")
    parser.add_argument("--pair_head_learning_rate", type=float, default=1e-3, help="the ALC pair head's")
    parser.add_argument("--warmup_ratio", type=float, default=0.1)
    parser.add_argument("--num_hard_negatives", type=int, default=1, help="labelled hard-negative columns per row")
    parser.add_argument("--cluster_size", type=int, default=4, help="rows per cluster with clustered batching")
    for name, (kind, help_text) in LOSS_OPTIONS.items():
        parser.add_argument(f"--{name}", type=kind, help=f"{help_text} (default: the library's)")
    parser.add_argument("--split_for_selection", choices=("test", "valid"), default="test")
    parser.add_argument("--eval_batch_size", type=int, default=128)
    parser.add_argument("--logging_steps", type=int, default=25)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--output", type=Path, help="the JSON (default: outputs/table_quality/<dataset>.json)")
    parser.add_argument("--keep_models", action="store_true", help="save every trained model beside the JSON")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --output, do the rest")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    preset = DATASETS[args.dataset]
    args.data_dir = args.data_dir or preset.data_dir
    args.text_fields = tuple(args.text_fields or preset.text_fields)
    args.epochs = args.epochs or preset.epochs
    args.max_seq_length = args.max_seq_length or preset.max_seq_length
    args.output = args.output or REPO / "outputs" / "table_quality" / f"{args.dataset}.json"
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    args.arms = [arm for arm in ALL_ARMS if arm in args.arms]
    args.batching = [batching for batching in BATCHING if batching in args.batching]
    args.seeds = list(dict.fromkeys(args.seeds))
    return args


def result_settings(args: argparse.Namespace) -> dict:
    return {
        "dataset": args.dataset,
        "model": args.model,
        "data_dir": str(args.data_dir),
        "text_fields": list(args.text_fields),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "pair_head_learning_rate": args.pair_head_learning_rate,
        "warmup_ratio": args.warmup_ratio,
        "num_hard_negatives": args.num_hard_negatives,
        "max_seq_length": args.max_seq_length,
        "cluster_size": args.cluster_size,
        "split_for_selection": args.split_for_selection,
        "loss_options": loss_options(args),
        "target_precisions": list(TARGET_PRECISIONS),
    }


def load_previous(args: argparse.Namespace, settings: dict) -> dict:
    empty = {"runs": [], "hardness": {}}
    if not args.output.exists() or args.overwrite:
        return empty
    if not args.resume:
        raise SystemExit(f"{args.output} exists: pass --resume to continue it or --overwrite to replace it")
    previous = json.loads(args.output.read_text())
    changed = {
        key: (previous["settings"].get(key), settings[key])
        for key in RESULT_SETTINGS
        if previous["settings"].get(key) != settings[key]
    }
    if changed:
        raise SystemExit(f"cannot resume {args.output}: settings changed (then, now): {changed}")
    return {"runs": previous["runs"], "hardness": previous.get("hardness", {})}


def planned_runs(args: argparse.Namespace) -> list[tuple]:
    plan = [(OFF_THE_SHELF, None, None)] if OFF_THE_SHELF in args.arms else []
    # Seed-major: after the first seed every row has a figure, and later seeds tighten them.
    for seed in args.seeds:
        for batching in args.batching:
            plan += [(arm, batching, seed) for arm in args.arms if arm != OFF_THE_SHELF]
    return plan


def write_results(path: Path, settings: dict, state: dict) -> None:
    results = {"settings": settings, **state, "summary": summarise(state["runs"])}
    write_atomically(path, json.dumps(results, indent=1, allow_nan=False).encode())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*Token indices sequence length.*")
    settings = result_settings(args)
    state = load_previous(args, settings)
    done = {(run["arm"], run["batching"], run["seed"]) for run in state["runs"]}
    train_data = read_product_tables(args.data_dir, split="train", text_fields=args.text_fields)
    views = load_views(args.data_dir, args.text_fields, args.split_for_selection)
    todo = [key for key in planned_runs(args) if key not in done]
    probe = load_encoder(args.model)
    truncated = {
        side: truncated_share(probe, texts, args.max_seq_length)
        for side, texts in (("queries", train_data.queries), ("labels", train_data.labels))
    }
    settings["truncated_share"] = truncated
    print(
        f"{args.dataset}: {len(todo)} run(s) to do ({len(done)} already in {args.output}); arms {args.arms}, "
        f"batching {args.batching}, seeds {args.seeds}\n"
        f"train: {len(train_data.positives.ids)} (query, positive) rows of {train_data.num_queries} queries, "
        f"{args.epochs:g} epoch(s) at batch {args.batch_size}, lr {args.learning_rate:g} (pair head "
        f"{args.pair_head_learning_rate:g}), {args.num_hard_negatives} hard-negative column(s); text: "
        f"{' + '.join(args.text_fields)}, max_seq_length {args.max_seq_length} (truncates "
        f"{truncated['queries']:.1%} of the queries, {truncated['labels']:.1%} of the labels)\n"
        f"block view: {len(views[0].queries)} calibration and {len(views[1].queries)} test queries",
        flush=True,
    )
    # Batch hardness belongs to the main table; ablations (selection on valid) skip it.
    for seed in args.seeds if args.split_for_selection == "test" else []:
        if str(seed) not in state["hardness"] and "clustered" in args.batching:
            state["hardness"][str(seed)] = hardness(probe, train_data, seed, args)
            print(f"batch hardness, seed {seed}: {state['hardness'][str(seed)]}", flush=True)
    del probe

    started = time.perf_counter()
    seconds_per_run: list[float] = []
    models_dir = args.output.with_name(args.output.stem + "_models")
    for number, (arm, batching, seed) in enumerate(todo, start=1):
        print(f"\n[{number}/{len(todo)}] {arm}" + ("" if batching is None else f" / {batching} / seed {seed}"))
        run_started = time.perf_counter()
        record: dict[str, Any] = {"arm": arm, "batching": batching, "seed": seed}
        if arm == OFF_THE_SHELF:
            model, pair_head = load_encoder(args.model), None
            model.max_seq_length = args.max_seq_length
        else:
            save_to = models_dir / f"{arm}_{batching}_seed{seed}" if args.keep_models else None
            model, loss, record["training"] = train(arm, batching, seed, train_data, args, save_to)
            pair_head = find_pair_head(loss)
            print(
                f"  trained {record['training']['steps']} steps in {record['training']['train_seconds'] / 60:.1f} "
                f"min ({record['training']['seconds_per_step_median']:.2f} s/step)",
                flush=True,
            )
        model.eval()
        start = time.perf_counter()
        reports = evaluate(model, pair_head, views, args)
        record["eval_seconds"] = time.perf_counter() - start
        record["accept_scores"] = {name: report_record(report) for name, report in reports.items()}
        record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        for name, accepted in record["accept_scores"].items():
            m = accepted["metrics"]
            print(
                f"  {name:10s} P@1 {value(m['p@1'])}  C@1@90 {value(m['c@1_p90'])} (prec. "
                f"{value(m['c@1_p90_precision'])}, oracle {value(m['c@1_p90_oracle'])})  C@1@95 "
                f"{value(m['c@1_p95'])} (prec. {value(m['c@1_p95_precision'])})  AUPC {value(m['aupc'])}",
                flush=True,
            )
        state["runs"] = [r for r in state["runs"] if (r["arm"], r["batching"], r["seed"]) != (arm, batching, seed)]
        state["runs"].append(record)
        write_results(args.output, settings, state)
        del model, pair_head
        gc.collect()
        seconds_per_run.append(time.perf_counter() - run_started)
        left = statistics.median(seconds_per_run) * (len(todo) - number)
        print(f"  elapsed {(time.perf_counter() - started) / 60:.1f} min, about {left / 60:.0f} min left", flush=True)

    write_results(args.output, settings, state)
    print("\n" + tables(json.loads(args.output.read_text())))
    print(f"\nevery figure: {args.output}")
    return 0


def value(figure: float | None) -> str:
    return "n/a" if figure is None else f"{figure:.3f}"


if __name__ == "__main__":
    sys.exit(main())
