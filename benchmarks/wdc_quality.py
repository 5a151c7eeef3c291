"""Quality benchmark on real web-shop offers (WDC Products, block small): does ALC / TCM buy coverage?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/wdc_quality.py                       # every arm, both settings
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/wdc_quality.py --arms mnrl softmax_alc_tcm --seeds 0 \
        --max_steps 3 --views block --output outputs/wdc_quality/smoke.json        # a smoke test
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/wdc_quality.py --resume             # continue an interrupted run

Fine-tunes all-MiniLM-L6-v2 (offline) on the train pairs of ``../shared/data/wdc_block_small`` (brand + title,
max_seq_length 64) with each arm's loss, then measures coverage on test with thresholds calibrated on valid:

* arms: ``mnrl`` (sentence-transformers' MultipleNegativesRankingLoss: what users have today), ``softmax``
  (MultiPositiveSoftmaxLoss), ``triplet`` (HardestNegativeTripletLoss); each backbone ``_tcm`` (TCMLoss around it),
  ``_alc`` (ALCLoss around it) and ``_alc_tcm`` (TCMLoss(ALCLoss(backbone))); ``off_the_shelf`` (no training, the
  floor). The ALC pair head gets its own learning rate (``--pair_head_learning_rate``), as in the recipe.
* negatives: ``in_batch`` (anchor, positive, label columns) and ``hard`` (plus ``--num_hard_negatives`` columns of
  labelled ``label == 0`` offers from train.csv).
* every trained arm of a seed sees the same rows in the same order (UniqueQueryLabelBatchSampler seeded with the
  seed; the order depends only on the seed, not on the arm or the negatives setting), the same steps, batch size
  and learning rates.
* views: ``block`` (primary: each query ranked against its labelled candidates; open set, half of test has no
  match) and ``catalog`` (secondary: each query with a match in the split ranked against all 5,000 tableB offers,
  ground truth = its positives over train/valid/test, identical-text duplicates filtered; precision is a lower
  bound; ``alc_hf.data.sources.wdc_catalog_split``). See
  ``../shared/data/README.md``.

Each model embeds tableB once and each distinct query text once; both views reuse those embeddings (the numbers
are those of ``CoverageEvaluator(calibration, test).compute_report(model)``: ``--check_evaluator`` verifies it on
the off-the-shelf model). The JSON (``--output``) holds every figure of every arm, negatives setting and seed, and
the summary the tables are printed from; it is rewritten atomically after each run, and ``--resume`` skips the
runs it already holds (the training settings must match).

``--split_for_selection valid`` (for ablations) never reads test.csv: the valid queries are divided at random
(fixed seed) into a calibration half and a held-out half, and the figures are those of the held-out half.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import logging
import math
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
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import nn
from transformers import TrainerCallback, set_seed

from alc_hf.data import (
    EvaluationView,
    UniqueQueryLabelBatchSampler,
    XMCData,
    evaluation_view,
    read_product_tables,
    training_rows,
)
from alc_hf.data.readers import normalise_text
from alc_hf.data.sources import wdc_catalog_split
from alc_hf.evaluation import CoverageEvaluator, CoverageReport, coverage_report, embed_texts, predict_split
from alc_hf.evaluation.report import write_atomically
from alc_hf.metrics import precision_coverage_curve
from alc_hf.models import DEFAULT_MODEL, load_encoder
from alc_hf.pipeline import build_loss, pair_head_learning_rates
from alc_hf.retrieval import LabelIndex

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data" / "wdc_block_small"

BACKBONES = ("mnrl", "softmax", "triplet")
OFF_THE_SHELF = "off_the_shelf"
# arm -> (backbone, ALC, TCM), in table order.
ARMS: dict[str, tuple[str, bool, bool]] = {
    f"{backbone}{suffix}": (backbone, alc, tcm)
    for backbone in BACKBONES
    for suffix, alc, tcm in (("", False, False), ("_tcm", False, True), ("_alc", True, False), ("_alc_tcm", True, True))
}
ALL_ARMS = (OFF_THE_SHELF, *ARMS)
PLOTTED_ARMS = (OFF_THE_SHELF, "mnrl", "softmax", "softmax_tcm", "softmax_alc_tcm", "triplet", "triplet_alc_tcm")
# What the issue asks for: MNRL as users run it today, and each of the project's backbones alone, + TCM, + ALC,
# + ALC + TCM. The other MNRL arms (ALC added to existing MNRL code) run when named with --arms.
DEFAULT_ARMS = tuple(arm for arm in ALL_ARMS if not arm.startswith("mnrl_"))
# ALCLoss / TCMLoss options the command line can set (ablations); unset, the library's defaults apply.
LOSS_OPTIONS = {
    "ql_weight": (float, "ALC β1, weight of L_ql"),
    "qb_weight": (float, "ALC β2, weight of L_qb"),
    "num_negatives": (int, "ALC k, hardest in-batch negatives for L_qb"),
    "pos_margin": (float, "TCM m+"),
    "neg_margin": (float, "TCM m-"),
}
NEGATIVES = ("in_batch", "hard")
VIEWS = ("block", "catalog")
TARGET_PRECISIONS = (0.9, 0.95)
PRECISION_AT_K = (1, 5)
SELECTION_SEED = 0  # the valid halves of --split_for_selection valid

# Cost model for the estimate printed at the start, measured on the project's 2-core CPU (no GPU) on 2026-11-21
# with the defaults below: seconds per text of a training step (forward + backward + AdamW, batch 32, 96 texts a
# step with one hard-negative column) and texts per second when encoding for evaluation (batch --eval_batch_size,
# max_seq_length 64). The run prints the measured figures and an updated ETA as it goes.
TRAIN_SECONDS_PER_TEXT = 0.022
ENCODE_TEXTS_PER_SECOND = 300.0
MODEL_LOAD_SECONDS = 3.0

# Settings that change the figures: a run in the JSON is reused by --resume only when they agree.
RESULT_SETTINGS = (
    "model",
    "data_dir",
    "max_steps",
    "batch_size",
    "learning_rate",
    "pair_head_learning_rate",
    "warmup_ratio",
    "num_hard_negatives",
    "max_seq_length",
    "split_for_selection",
    "loss_options",
)

# The columns of the printed tables: (metric name, header).
COLUMNS = (
    ("p@1", "P@1"),
    ("c@1_p90", "C@1@90 cal."),
    ("c@1_p90_precision", "prec. @90 cal."),
    ("c@1_p90_oracle", "C@1@90 oracle"),
    ("c@1_p95", "C@1@95 cal."),
    ("c@1_p95_precision", "prec. @95 cal."),
    ("aupc", "AUPC"),
    ("opis", "OPIS (brands)"),
)


# ----------------------------------------------------------------------------------------------------------------
# data


@dataclass
class ViewPair:
    """One view's calibration and test splits."""

    name: str
    calibration: EvaluationView
    test: EvaluationView


def split_halves(data: XMCData, in_first: set[str], names: tuple[str, str]) -> tuple[XMCData, XMCData]:
    first = np.array([query in in_first for query in data.queries], dtype=bool)
    return data.select_queries(first, source=names[0]), data.select_queries(~first, source=names[1])


def load_views(data_dir: Path, views: list[str], split_for_selection: str) -> dict[str, ViewPair]:
    """The block and/or catalog views: valid -> test, or valid half -> other valid half for selection."""
    if split_for_selection == "test":
        splits = {"calibration": "valid", "test": "test"}
    else:
        splits = {"calibration": "valid", "test": "valid"}
    # The calibration / held-out halves of valid (selection mode): by query text, so a repeated text stays on one side.
    in_calibration_half: set[str] | None = None
    if split_for_selection == "valid":
        queries = list(dict.fromkeys(read_product_tables(data_dir, split="valid").queries))
        order = np.random.default_rng(SELECTION_SEED).permutation(len(queries))
        in_calibration_half = {queries[i] for i in order[: len(queries) // 2]}

    result = {}
    for view in views:
        parts = {}
        for role, split in splits.items():
            if view == "block":
                data = read_product_tables(data_dir, split=split)
            else:
                data = wdc_catalog_split(data_dir, split)
            if in_calibration_half is not None:
                first, second = split_halves(data, in_calibration_half, ("valid half 1", "valid half 2"))
                data = first if role == "calibration" else second
            parts[role] = evaluation_view(data, candidates="labelled" if view == "block" else "corpus")
        result[view] = ViewPair(view, parts["calibration"], parts["test"])
    return result


def texts_to_encode(views: dict[str, ViewPair]) -> tuple[list[str], list[str], np.ndarray]:
    """(the label corpus, the distinct query texts of every view, the corpus rows any view can score)."""
    pairs = list(views.values())
    corpus = pairs[0].calibration.corpus
    for pair in pairs:
        for view in (pair.calibration, pair.test):
            if view.corpus != corpus:
                raise ValueError("the views do not share one label corpus (tableB); they cannot share its embeddings")
    queries = list(dict.fromkeys(q for pair in pairs for view in (pair.calibration, pair.test) for q in view.queries))
    if any(view.candidates is None for pair in pairs for view in (pair.calibration, pair.test)):
        needed = np.arange(len(corpus))
    else:  # block view only: just the labelled candidates are ever scored
        needed = np.unique(
            np.concatenate([view.candidates.ids for pair in pairs for view in (pair.calibration, pair.test)])
        )
    return corpus, queries, needed


# ----------------------------------------------------------------------------------------------------------------
# evaluation


def brand_groups(data_dir: Path, corpus: list[str]) -> np.ndarray:
    """The OPIS class of each tableB offer: its brand (normalised); offers without one are each their own class.

    OPIS needs classes with five or more positive pairs, and no WDC offer has that many matches in a split; one
    threshold working alike for every brand is the consistency a shop's catalog needs."""
    with open(data_dir / "tableB.csv", encoding="utf-8", newline="") as handle:
        brands = [normalise_text(row["brand"] or "") for row in csv.DictReader(handle)]
    if len(brands) != len(corpus):
        raise ValueError(f"{data_dir / 'tableB.csv'}: {len(brands)} rows but the label corpus has {len(corpus)}")
    for brand, text in zip(brands, corpus, strict=True):
        if brand and not normalise_text(text).startswith(brand):
            raise ValueError(f"tableB.csv rows are not in label corpus order: brand {brand!r}, text {text!r}")
    key: dict[str, int] = {}
    return np.array(
        [key.setdefault(brand, len(key)) if brand else -1 - i for i, brand in enumerate(brands)], dtype=np.int64
    )


def evaluate(
    model: SentenceTransformer, views: dict[str, ViewPair], batch_size: int, label_groups: np.ndarray
) -> dict[str, CoverageReport]:
    """Every view's coverage report, as ``CoverageEvaluator(calibration, test).compute_report(model)`` computes it,
    but with tableB and each distinct query text embedded once for all views, and OPIS across brands."""
    corpus, queries, needed = texts_to_encode(views)
    label_embeddings = embed_texts(model.encode_document, [corpus[i] for i in needed], batch_size)
    if len(needed) == len(corpus):
        corpus_embeddings = label_embeddings
    else:  # rows no view can score get a placeholder unit vector (LabelIndex refuses zero rows)
        corpus_embeddings = np.full((len(corpus), label_embeddings.shape[1]), label_embeddings.shape[1] ** -0.5)
        corpus_embeddings = corpus_embeddings.astype(np.float32)
        corpus_embeddings[needed] = label_embeddings
    index = LabelIndex(corpus_embeddings)
    query_embeddings = embed_texts(model.encode_query, queries, batch_size)
    row = {query: i for i, query in enumerate(queries)}
    k = max(PRECISION_AT_K)
    reports = {}
    for name, pair in views.items():
        predictions = {
            role: predict_split(view, query_embeddings[[row[q] for q in view.queries]], index, k, role)
            for role, view in (("calibration", pair.calibration), ("test", pair.test))
        }
        reports[name] = coverage_report(
            predictions["calibration"],
            predictions["test"],
            TARGET_PRECISIONS,
            PRECISION_AT_K,
            label_groups=label_groups,
        )
    return reports


def check_against_evaluator(
    model: SentenceTransformer, views: dict[str, ViewPair], reports: dict[str, CoverageReport], batch_size: int
) -> None:
    """Stop unless CoverageEvaluator, embedding everything itself, gives the same figures (OPIS aside: the
    evaluator classes pairs by label, this benchmark by brand)."""
    for name, pair in views.items():
        evaluator = CoverageEvaluator(
            pair.calibration,
            pair.test,
            target_precisions=TARGET_PRECISIONS,
            precision_at_k=PRECISION_AT_K,
            batch_size=batch_size,
            show_progress_bar=False,
        )
        expected = evaluator.compute_report(model).metrics()
        got = reports[name].metrics()
        differ = {
            key: (got[key], value)
            for key, value in expected.items()
            if key != "opis"
            and not (
                (math.isnan(value) and math.isnan(got[key]))
                or math.isclose(value, got[key], rel_tol=1e-5, abs_tol=1e-6)
            )
        }
        if differ:
            raise SystemExit(f"{name} view: figures differ from CoverageEvaluator's (ours, its): {differ}")
        print(f"  check: the {name} view's figures equal CoverageEvaluator.compute_report's", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# training


def build_arm_loss(model: SentenceTransformer, arm: str, loss_options: dict[str, float]) -> nn.Module:
    backbone, alc, tcm = ARMS[arm]
    base: str | nn.Module = MultipleNegativesRankingLoss(model) if backbone == "mnrl" else backbone
    return build_loss(model, base, alc=alc, tcm=tcm, **loss_options)


def describe_loss_chain(loss: nn.Module) -> list[dict[str, Any]]:
    """Each loss of a wrapping chain (outermost first) with its configuration, for the JSON."""
    chain = []
    while loss is not None:
        chain.append({"loss": type(loss).__name__, **loss.get_config_dict()})
        loss = getattr(loss, "loss", None)
    return chain


def loss_options(args: argparse.Namespace) -> dict[str, float]:
    """The ALC / TCM options given on the command line; the others keep the library's defaults."""
    return {name: getattr(args, name) for name in LOSS_OPTIONS if getattr(args, name) is not None}


class Progress(TrainerCallback):
    """Times every step and prints the logged loss parts with the recent seconds per step."""

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
        recent = self.step_seconds[-args.logging_steps :]
        print(
            f"    step {state.global_step}/{state.max_steps}  {parts}  {statistics.mean(recent):.2f} s/step",
            flush=True,
        )


def train(
    arm: str, negatives: str, seed: int, train_data: XMCData, args: argparse.Namespace
) -> tuple[SentenceTransformer, dict]:
    set_seed(seed)  # before the loss: the pair head is initialised when it is built
    model = load_encoder(args.model)
    model.max_seq_length = args.max_seq_length
    num_hard = args.num_hard_negatives if negatives == "hard" else 0
    rows = training_rows(train_data, num_hard_negatives=num_hard, seed=seed)
    loss = build_arm_loss(model, arm, loss_options(args))
    loss_config = describe_loss_chain(loss)
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="wdc_quality_") as output_dir:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=output_dir,
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_ratio=args.warmup_ratio,
            seed=seed,
            learning_rate_mapping=pair_head_learning_rates(loss, args.pair_head_learning_rate),
            batch_sampler=UniqueQueryLabelBatchSampler.configure(),
            logging_steps=max(1, args.max_steps // 5),
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args, train_dataset=rows, loss=loss, callbacks=[progress]
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    steps = progress.step_seconds
    timed = steps[1:] or steps  # the first step warms up
    info = {
        "train_seconds": seconds,
        "steps": len(steps),
        "seconds_per_step_median": statistics.median(timed),
        "seconds_per_step_mean": statistics.mean(timed),
        "texts_per_step": args.batch_size * (2 + num_hard),
        "rows": len(rows),
        "log": [entry for entry in trainer.state.log_history if "loss" in entry],
        "loss": loss_config,
    }
    del trainer, loss
    return model, info


# ----------------------------------------------------------------------------------------------------------------
# results


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def view_record(report: CoverageReport) -> dict:
    full = report.to_dict()
    coverage = full["coverage_at"]["1"]
    return {
        "metrics": full["metrics"],
        # why a figure is n/a: nothing accepted on test, a target unreachable on calibration, no label for OPIS
        "num_accepted": {f"p{100 * c['target_precision']:g}": c["test"]["num_accepted"] for c in coverage},
        "reachable": {f"p{100 * c['target_precision']:g}": c["reachable"] for c in coverage},
        "opis_num_labels": full["test_opis"]["num_labels"],
        "report": full,
        # for the precision-coverage plot: every test query's top-1 score and whether it is right
        "test_top1": {
            "scores": [finite_or_none(float(v)) for v in report.test_top1[0]],
            "correct": [bool(v) for v in report.test_top1[1]],
        },
    }


def summarise(runs: list[dict], views: list[str], negatives: list[str], arms: list[str]) -> dict:
    """Per view, negatives setting and arm: mean, standard deviation (ddof 1) and count of every metric over seeds;
    NaN / None figures are left out of the mean and counted in ``missing``."""
    summary: dict = {}
    for view in views:
        for setting in negatives:
            table = summary.setdefault(view, {}).setdefault(setting, {})
            for arm in arms:
                chosen = [
                    run
                    for run in runs
                    if run["arm"] == arm
                    and (arm == OFF_THE_SHELF or run["negatives"] == setting)
                    and view in run["views"]
                ]
                if not chosen:
                    continue
                figures = {}
                for metric in chosen[0]["views"][view]["metrics"]:
                    values = [run["views"][view]["metrics"][metric] for run in chosen]
                    present = [v for v in values if v is not None]
                    figures[metric] = {
                        "mean": statistics.mean(present) if present else None,
                        "std": statistics.stdev(present) if len(present) > 1 else None,
                        "n": len(present),
                        "missing": len(values) - len(present),
                    }
                table[arm] = {"seeds": [run["seed"] for run in chosen], "figures": figures}
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
    """Markdown tables, one per view and negatives setting, printed from the JSON's summary."""
    settings = results["settings"]
    out = []
    for view, by_setting in results["summary"].items():
        for setting, by_arm in by_setting.items():
            if not by_arm:
                continue
            test = "held-out valid half" if settings["split_for_selection"] == "valid" else "test"
            out += [
                "",
                f"### {view} view, {setting} negatives ({test}; thresholds calibrated on "
                f"{'the other valid half' if test != 'test' else 'valid'}; mean ± std over seeds)",
                "",
                "| arm | seeds | " + " | ".join(header for _, header in COLUMNS) + " |",
                "|---|---|" + "---|" * len(COLUMNS),
            ]
            for arm, entry in by_arm.items():
                seeds = "-" if arm == OFF_THE_SHELF else " ".join(str(s) for s in entry["seeds"])
                out.append(
                    f"| {arm} | {seeds} | "
                    + " | ".join(cell(entry["figures"].get(metric)) for metric, _ in COLUMNS)
                    + " |"
                )
            out += notes(results["runs"], view, setting)
    return "\n".join(out)


def notes(runs: list[dict], view: str, setting: str) -> list[str]:
    """Say why figures are n/a instead of hiding it."""
    chosen = [r for r in runs if view in r["views"] and (r["arm"] == OFF_THE_SHELF or r["negatives"] == setting)]
    lines = []
    for target in ("p90", "p95"):
        unreachable = sorted({r["arm"] for r in chosen if not r["views"][view]["reachable"][target]})
        empty = sorted({r["arm"] for r in chosen if r["views"][view]["num_accepted"][target] == 0})
        if unreachable:
            lines.append(f"- {target}: precision unreachable on the calibration split (C@1 = 0) for {unreachable}")
        if empty:
            lines.append(f"- {target}: no test query accepted (achieved precision n/a) for {empty}")
    no_opis = sorted({r["arm"] for r in chosen if r["views"][view]["opis_num_labels"] == 0})
    if no_opis:
        lines.append(f"- OPIS n/a (no brand with >= 5 positive test pairs and both matches and non-matches): {no_opis}")
    return ["", *lines] if lines else []


def plot_curves(results: dict, path: Path, seed: int) -> Path | None:
    """Test precision against coverage (top-1) of the main arms, per view and negatives setting, for one seed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    views = list(results["summary"])
    settings = list(dict.fromkeys(setting for by_setting in results["summary"].values() for setting in by_setting))
    runs = {(r["arm"], r["negatives"], r["seed"]): r for r in results["runs"]}
    if not views or not settings:
        return None
    figure, axes = plt.subplots(
        len(views), len(settings), figsize=(5.5 * len(settings), 4.5 * len(views)), squeeze=False
    )
    try:
        for axis, (view, setting) in zip(
            axes.reshape(-1), [(view, setting) for view in views for setting in settings], strict=True
        ):
            for arm in PLOTTED_ARMS:
                run = runs.get(run_key(arm, setting, seed))
                # runs recorded before the top-1 scores were kept (resumed JSON) cannot be drawn
                if run is None or "test_top1" not in run["views"].get(view, {}):
                    continue
                top1 = run["views"][view]["test_top1"]
                scores = np.array([-np.inf if v is None else v for v in top1["scores"]], dtype=np.float64)
                curve = precision_coverage_curve(scores, np.array(top1["correct"], dtype=bool))
                axis.plot(curve.coverage, curve.precision, label=arm, linestyle="--" if arm == OFF_THE_SHELF else "-")
            for target in TARGET_PRECISIONS:
                axis.axhline(target, color="grey", linewidth=0.6)
            axis.set(
                title=f"{view} view, {setting} negatives (seed {seed})",
                xlabel="coverage (share of test queries accepted)",
                ylabel="precision of the accepted",
                xlim=(0, 1),
                ylim=(0, 1.02),
            )
            axis.legend(fontsize=8)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
    return path


def write_results(path: Path, results: dict) -> None:
    write_atomically(path, json.dumps(results, indent=1, allow_nan=False).encode())


# ----------------------------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", choices=ALL_ARMS, default=list(DEFAULT_ARMS))
    parser.add_argument("--negatives", nargs="+", choices=NEGATIVES, default=list(NEGATIVES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=20, help="training steps of every arm")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="the encoder's")
    parser.add_argument("--pair_head_learning_rate", type=float, default=1e-3, help="the ALC pair head's")
    parser.add_argument("--warmup_ratio", type=float, default=0.1)
    parser.add_argument("--num_hard_negatives", type=int, default=1, help="hard-negative columns with --negatives hard")
    for name, (kind, help_text) in LOSS_OPTIONS.items():
        parser.add_argument(f"--{name}", type=kind, help=f"{help_text} (default: the library's)")
    parser.add_argument("--views", nargs="+", choices=VIEWS, default=list(VIEWS))
    parser.add_argument("--split_for_selection", choices=("test", "valid"), default="test")
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--eval_batch_size", type=int, default=128, help="encoding batch size for evaluation")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data_dir", type=Path, default=DATA_DIR)
    parser.add_argument("--output", type=Path, default=REPO / "outputs" / "wdc_quality" / "results.json")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --output, do the rest")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument(
        "--check_evaluator",
        action="store_true",
        help="also run CoverageEvaluator on the off-the-shelf model and stop if its figures differ",
    )
    args = parser.parse_args(argv)
    if args.max_steps < 1 or args.batch_size < 1 or args.num_hard_negatives < 1:
        parser.error("--max_steps, --batch_size and --num_hard_negatives must be >= 1")
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    args.arms = list(dict.fromkeys(a for a in ALL_ARMS if a in args.arms))  # table order
    args.negatives = list(dict.fromkeys(args.negatives))
    args.seeds = list(dict.fromkeys(args.seeds))
    args.views = [v for v in VIEWS if v in args.views]
    return args


def result_settings(args: argparse.Namespace) -> dict:
    return {
        "model": args.model,
        "data_dir": str(args.data_dir),
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "pair_head_learning_rate": args.pair_head_learning_rate,
        "warmup_ratio": args.warmup_ratio,
        "num_hard_negatives": args.num_hard_negatives,
        "max_seq_length": args.max_seq_length,
        "split_for_selection": args.split_for_selection,
        "loss_options": loss_options(args),
        "text_fields": ["brand", "title"],
        "target_precisions": list(TARGET_PRECISIONS),
        "calibration_method": "empirical",
        "sampler": "UniqueQueryLabelBatchSampler(seed=seed)",
    }


def load_previous(args: argparse.Namespace, settings: dict) -> list[dict]:
    if not args.output.exists():
        return []
    if args.overwrite:
        return []
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
    return previous["runs"]


def run_key(arm: str, negatives: str | None, seed: int | None) -> tuple:
    return (arm, None, None) if arm == OFF_THE_SHELF else (arm, negatives, seed)


def planned_runs(args: argparse.Namespace) -> list[tuple]:
    plan = []
    if OFF_THE_SHELF in args.arms:
        plan.append(run_key(OFF_THE_SHELF, None, None))
    # Seed-major: after the first seed every arm has a figure, and later seeds tighten them.
    for seed in args.seeds:
        for negatives in args.negatives:
            for arm in args.arms:
                if arm != OFF_THE_SHELF:
                    plan.append(run_key(arm, negatives, seed))
    return plan


def estimate_seconds(args: argparse.Namespace, plan: list[tuple], eval_texts: int) -> tuple[float, float, float]:
    """(total, one training run in-batch, one evaluation) from the cost model."""
    eval_seconds = eval_texts / ENCODE_TEXTS_PER_SECOND
    total = 0.0
    for arm, negatives, _ in plan:
        total += MODEL_LOAD_SECONDS + eval_seconds
        if arm != OFF_THE_SHELF:
            texts = args.batch_size * (2 + (args.num_hard_negatives if negatives == "hard" else 0))
            total += args.max_steps * texts * TRAIN_SECONDS_PER_TEXT
    train_in_batch = args.max_steps * args.batch_size * 2 * TRAIN_SECONDS_PER_TEXT
    return total, train_in_batch, eval_seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*Token indices sequence length.*")
    settings = result_settings(args)
    runs = load_previous(args, settings)
    done = {run_key(r["arm"], r["negatives"], r["seed"]) for r in runs if all(v in r["views"] for v in args.views)}

    train_data = read_product_tables(args.data_dir, split="train")
    views = load_views(args.data_dir, args.views, args.split_for_selection)
    label_groups = brand_groups(args.data_dir, next(iter(views.values())).test.corpus)
    corpus, queries, needed = texts_to_encode(views)
    plan = planned_runs(args)
    todo = [key for key in plan if key not in done]
    total, train_one, eval_one = estimate_seconds(args, todo, len(needed) + len(queries))
    print(
        f"WDC quality: {len(todo)} run(s) to do ({len(plan) - len(todo)} already in {args.output}); "
        f"arms {args.arms}, negatives {args.negatives}, seeds {args.seeds}, views {args.views}\n"
        f"train: {len(train_data.positives.ids)} (query, positive) rows of {train_data.num_queries} queries; "
        f"{args.max_steps} steps x batch {args.batch_size} (lr {args.learning_rate:g}, pair head "
        f"{args.pair_head_learning_rate:g}), hard negatives: {args.num_hard_negatives} column(s)\n"
        + "".join(
            f"{name} view: {len(pair.calibration.queries)} calibration and {len(pair.test.queries)} test queries\n"
            for name, pair in views.items()
        )
        + f"evaluation embeds {len(needed)} tableB offers + {len(queries)} distinct query texts per model\n"
        f"estimate (2-core CPU cost model): {train_one:.0f} s per in-batch training run, {eval_one:.0f} s per "
        f"evaluation, about {total / 60:.0f} min in all",
        flush=True,
    )

    started = time.perf_counter()
    measured_train_per_text: list[float] = []
    measured_eval: list[float] = []
    for number, (arm, negatives, seed) in enumerate(todo, start=1):
        label = arm if arm == OFF_THE_SHELF else f"{arm} / {negatives} / seed {seed}"
        print(f"\n[{number}/{len(todo)}] {label}", flush=True)
        record: dict[str, Any] = {"arm": arm, "negatives": negatives, "seed": seed}
        if arm == OFF_THE_SHELF:
            model = load_encoder(args.model)
            model.max_seq_length = args.max_seq_length
        else:
            model, info = train(arm, negatives, seed, train_data, args)
            record["training"] = info
            measured_train_per_text.append(info["seconds_per_step_median"] / info["texts_per_step"])
            print(
                f"  trained {info['steps']} steps in {info['train_seconds']:.1f} s "
                f"({info['seconds_per_step_median']:.2f} s/step median, {info['texts_per_step']} texts/step)",
                flush=True,
            )
        model.eval()
        start = time.perf_counter()
        reports = evaluate(model, views, args.eval_batch_size, label_groups)
        record["eval_seconds"] = time.perf_counter() - start
        measured_eval.append(record["eval_seconds"])
        print(f"  evaluated in {record['eval_seconds']:.1f} s", flush=True)
        if args.check_evaluator and arm == OFF_THE_SHELF:
            check_against_evaluator(model, views, reports, args.eval_batch_size)
        record["views"] = {name: view_record(report) for name, report in reports.items()}
        record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        for name, view in record["views"].items():
            m = view["metrics"]
            print(
                f"  {name:8s} P@1 {cell_value(m['p@1'])}  C@1@90 {cell_value(m['c@1_p90'])} "
                f"(prec. {cell_value(m['c@1_p90_precision'])}, oracle {cell_value(m['c@1_p90_oracle'])})  "
                f"C@1@95 {cell_value(m['c@1_p95'])} (prec. {cell_value(m['c@1_p95_precision'])})  "
                f"AUPC {cell_value(m['aupc'])}  OPIS {cell_value(m['opis'])}",
                flush=True,
            )
        runs = [r for r in runs if run_key(r["arm"], r["negatives"], r["seed"]) != (arm, negatives, seed)]
        runs.append(record)
        results = {
            "settings": settings,
            "runs": runs,
            "summary": summarise(runs, args.views, args.negatives, args.arms),
        }
        write_results(args.output, results)
        del model
        gc.collect()
        elapsed = time.perf_counter() - started
        remaining = todo[number:]
        eta = remaining_seconds(args, remaining, measured_train_per_text, measured_eval) if remaining else 0.0
        print(f"  elapsed {elapsed / 60:.1f} min, about {eta / 60:.0f} min left", flush=True)

    results = {
        "settings": settings,
        "runs": runs,
        "summary": summarise(runs, args.views, args.negatives, args.arms),
    }
    write_results(args.output, results)
    # Print from the JSON as written: the tables are the figures it holds.
    written = json.loads(args.output.read_text())
    print(tables(written))
    plot = plot_curves(written, args.output.with_suffix(".png"), args.seeds[0])
    print(f"\nevery figure: {args.output}" + (f"\nprecision against coverage: {plot}" if plot else ""))
    return 0


def cell_value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def remaining_seconds(
    args: argparse.Namespace, remaining: list[tuple], train_per_text: list[float], eval_seconds: list[float]
) -> float:
    """Loads and evaluations at the measured median, training at the measured seconds per text."""
    per_text = statistics.median(train_per_text) if train_per_text else TRAIN_SECONDS_PER_TEXT
    texts = sum(
        args.max_steps * args.batch_size * (2 + (args.num_hard_negatives if negatives == "hard" else 0))
        for arm, negatives, _ in remaining
        if arm != OFF_THE_SHELF
    )
    return len(remaining) * (MODEL_LOAD_SECONDS + statistics.median(eval_seconds)) + texts * per_text


if __name__ == "__main__":
    sys.exit(main())
