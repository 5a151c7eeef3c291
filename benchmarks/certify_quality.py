"""Certify on your own traffic: does a threshold certified from a few labels hold where the validation one does not?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/certify_quality.py --dataset wdc
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/certify_quality.py --dataset walmart_amazon

The model is the recommended configuration (ALC + TCM, k = 2, clustered batches) as ``table_quality.py
--keep_models`` trains it (same data, budget and seeds as the quality table), read from the folder
``verifier_quality.py`` shares and trained here when missing. The traffic is the test split's block view: each
query's top-1 by cosine among its labelled candidates. Its ground truth plays the person who labels.

For each seed and each budget (``--budgets``, labels in one round), ``--draws`` random draws each certify a threshold
(``alc_hf.core.metrics.certify``, ``delta`` 0.05): the share of draws whose certified threshold really reaches the
target
on the whole traffic (a draw that certifies nothing accepts nothing, and misses nothing), the share that certify
anything, the coverage (0 where nothing is certified) and its ratio to the oracle (the most coverage at which the
traffic reaches the target), and the precision really reached where something is certified. Beside them, the
threshold calibrated on valid, applied to the same traffic.

``max_coverage`` (where the labels are drawn: the best-scored share of the traffic) and where the test sequences
start (``--starts``: the strictest alone, or several, ``alc_hf.core.metrics.certify.sequence_starts``) are chosen on
valid, never on test: the same procedure runs with the valid split as the traffic, for each pair and for a census
(the region the budget labels whole, certified exactly), and the one with the most mean certified coverage is used
on test, per seed and budget. A budget at least the region's size labels
all of it (the table says how many were used): every draw is then the same, and the certification exact.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import table_quality
from sentence_transformers import SentenceTransformer

from alc_hf.core.files import write_atomically
from alc_hf.core.metrics import (
    calibrate_threshold,
    certify_threshold,
    coverage_at_threshold,
    draw_order,
    labelling_region,
)
from alc_hf.core.metrics.certify import START_SHARES
from alc_hf.evaluation import CoverageEvaluator

REPO = Path(__file__).resolve().parents[1]
MODEL = ("alc_tcm", "clustered")
# Where the test sequences start: the strictest alone (the procedure before several starts) or several.
STARTS = {"strictest": (), "several": START_SHARES}
# A region the budget labels whole: a census, certified exactly (the starts play no part).
CENSUS = "census"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=table_quality.DATASETS, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budgets", nargs="+", type=int, default=[30, 50, 100, 200, 400])
    parser.add_argument("--draws", type=int, default=200, help="random draws per seed and budget")
    parser.add_argument("--selection_draws", type=int, default=100, help="draws per max_coverage on valid")
    parser.add_argument("--max_coverages", nargs="+", type=float, default=[0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0])
    parser.add_argument(
        "--starts", nargs="+", choices=STARTS, default=list(STARTS), help="the start rules chosen from on valid"
    )
    parser.add_argument("--target_precision", type=float, default=0.9)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--output", type=Path, help="default: outputs/certify_quality/<dataset>.json")
    args = parser.parse_args(argv)
    preset = table_quality.DATASETS[args.dataset]
    args.data_dir, args.text_fields = preset.data_dir, preset.text_fields
    args.output = args.output or REPO / "outputs" / "certify_quality" / f"{args.dataset}.json"
    args.bi_encoder_results = REPO / "outputs" / "verifier_quality" / f"{args.dataset}_bi_encoders.json"
    args.models_from = args.bi_encoder_results.with_name(f"{args.bi_encoder_results.stem}_models")
    return args


def model_dir(args: argparse.Namespace, seed: int) -> Path:
    return args.models_from / f"{MODEL[0]}_{MODEL[1]}_seed{seed}"


def top1_predictions(args: argparse.Namespace, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each split's top-1 cosine scores and whether each is right, in the block view."""
    views = table_quality.load_views(args.data_dir, args.text_fields, "test")
    evaluator = CoverageEvaluator(*views, precision_at_k=(1,), batch_size=128, accept_scores=("cosine",))
    calibration, test = evaluator.compute_predictions(SentenceTransformer(str(model_dir(args, seed))))["cosine"]
    return {name: (split.scores[:, 0], split.correct[:, 0]) for name, split in (("valid", calibration), ("test", test))}


def draw_certifications(
    scores: np.ndarray,
    correct: np.ndarray,
    budget: int,
    max_coverage: float | str,
    starts: str,
    draws: int,
    args: argparse.Namespace,
    seed: int,
) -> dict:
    """``draws`` certifications from random samples of ``budget`` labels, judged on the whole traffic. ``max_coverage``
    ``"census"``: the largest region the budget labels whole (``budget`` of the scored predictions)."""
    if max_coverage == CENSUS:
        max_coverage = min(1.0, budget / int(np.isfinite(scores).sum()))
    region = labelling_region(scores, max_coverage)
    size = int((scores >= region).sum())
    held, certified, coverage, precision = [], [], [], []
    for draw_seed in np.random.default_rng(seed).integers(2**31, size=draws):
        labelled = draw_order(scores, region, int(draw_seed))[:budget]
        result = certify_threshold(
            scores,
            labelled,
            correct[labelled],
            args.target_precision,
            region,
            args.delta,
            region_size=size,
            start_shares=STARTS[starts],
        )
        reached = coverage_at_threshold(scores, correct, result.threshold)
        certified.append(result.certified)
        coverage.append(reached.coverage)
        held.append(not result.certified or reached.precision >= args.target_precision - 1e-12)
        if result.certified:
            precision.append(reached.precision)
    return {
        "max_coverage": max_coverage,
        "starts": starts,
        "region_size": size,
        "labels": min(budget, size),
        "held": float(np.mean(held)),
        "certified": float(np.mean(certified)),
        "coverage": float(np.mean(coverage)),
        "coverage_std": float(np.std(coverage)),
        "precision": float(np.mean(precision)) if precision else None,
    }


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    splits = top1_predictions(args, seed)
    (valid_scores, valid_correct), (test_scores, test_correct) = splits["valid"], splits["test"]
    calibrated = calibrate_threshold(valid_scores, valid_correct, args.target_precision)
    valid_route = coverage_at_threshold(test_scores, test_correct, calibrated.threshold)
    oracle = calibrate_threshold(test_scores, test_correct, args.target_precision).coverage
    record = {
        "seed": seed,
        "oracle_coverage": oracle,
        "valid_threshold": {"coverage": valid_route.coverage, "precision": valid_route.precision},
        "budgets": {},
    }
    for budget in args.budgets:
        options = [(share, starts) for share in args.max_coverages for starts in args.starts] + [(CENSUS, "strictest")]
        selection = [
            draw_certifications(valid_scores, valid_correct, budget, share, starts, args.selection_draws, args, seed)
            for share, starts in options
        ]
        best = max(range(len(options)), key=lambda i: selection[i]["coverage"])
        share, starts = options[best]
        test = draw_certifications(test_scores, test_correct, budget, share, starts, args.draws, args, seed + 1000)
        test["chosen"] = CENSUS if share == CENSUS else f"{share:g} {starts}"
        record["budgets"][str(budget)] = {**test, "coverage_to_oracle": test["coverage"] / oracle if oracle else None}
        print(
            f"  seed {seed}, {budget} labels (chosen on valid: {test['chosen']}, "
            f"region {test['region_size']}): held {test['held']:.3f}, certified {test['certified']:.3f}, coverage "
            f"{test['coverage']:.3f} (oracle {oracle:.3f}), precision {test['precision']}",
            flush=True,
        )
    return record


def mean_std(values: list[float | None]) -> str:
    values = [value for value in values if value is not None]
    if not values:
        return "n/a"
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread}"


def table(results: dict) -> str:
    """The markdown table docs/benchmarks.md holds: per budget, mean ± std over seeds of each seed's draws."""
    runs = results["runs"]
    target = results["settings"]["target_precision"]
    valid = [run["valid_threshold"] for run in runs]
    held_by_valid = mean_std([float(route["precision"] >= target) for route in valid])
    valid_to_oracle = [route["coverage"] / run["oracle_coverage"] for route, run in zip(valid, runs, strict=True)]
    lines = [
        f"| route ({len(runs)} seeds, {results['settings']['draws']} draws each) | labels | region, starts (chosen on "
        f"valid, per seed) | share of draws with precision >= {target:g} on test | share certifying | coverage | "
        "coverage / oracle | precision reached |",
        "|---|---|---|---|---|---|---|---|",
        f"| threshold calibrated on valid | - | - | {held_by_valid} (of seeds) | - | "
        f"{mean_std([route['coverage'] for route in valid])} | {mean_std(valid_to_oracle)} | "
        f"{mean_std([route['precision'] for route in valid])} |",
        f"| oracle (threshold chosen on test) | - | - | - | - | {mean_std([r['oracle_coverage'] for r in runs])} | 1 | "
        f">= {target:g} |",
    ]
    for budget in results["settings"]["budgets"]:
        cells = [run["budgets"][str(budget)] for run in runs]
        used = sorted({c["labels"] for c in cells})
        labels = f"{budget}" if used == [budget] else f"{budget} (used {' or '.join(map(str, used))})"
        chosen = ", ".join(c["chosen"] for c in cells)
        lines.append(
            f"| certified on test traffic | {labels} | {chosen} | {mean_std([c['held'] for c in cells])} "
            f"(lowest {min(c['held'] for c in cells):.3f}) | {mean_std([c['certified'] for c in cells])} | "
            f"{mean_std([c['coverage'] for c in cells])} | {mean_std([c['coverage_to_oracle'] for c in cells])} | "
            f"{mean_std([c['precision'] for c in cells])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    table_quality.train_missing_models(args.dataset, "_".join(MODEL), args.seeds, args.bi_encoder_results)
    settings = {
        key: value if not isinstance(value, Path) else str(value)
        for key, value in vars(args).items()
        if key not in ("output", "bi_encoder_results")
    }
    runs = []
    for seed in args.seeds:
        print(f"{args.dataset}, seed {seed}:", flush=True)
        runs.append(run_seed(args, seed))
    results = {"settings": settings, "date": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs}
    write_atomically(args.output, json.dumps(results, indent=2).encode())
    print(table(results))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
