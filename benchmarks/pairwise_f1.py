"""Pairwise F1 on the labelled test pairs, as published matchers report it: where do the bi-encoder's scores stand?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pairwise_f1.py --dataset walmart_amazon
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pairwise_f1.py --dataset wdc

Every labelled (query, candidate) pair of valid and test (the DeepMatcher / WDC pair files, read as block views) is
scored; a pair is predicted a match when its score reaches the threshold with the best F1 on valid, and precision,
recall and F1 are measured on test (``alc_hf.core.metrics.pairwise_f1``, through ``CoverageEvaluator(pairwise=True)``).
Rows: all-MiniLM-L6-v2 off the shelf (cosine), and the recommended configuration (ALC + TCM, k = 2, clustered
batches) as ``table_quality.py --keep_models`` trains it (the folder ``verifier_quality.py`` shares; trained here when
missing), by each accept score it has: the cosine, the ALC pair head, the combined score. Mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import table_quality
from sentence_transformers import SentenceTransformer

from alc_hf.core.files import write_atomically
from alc_hf.evaluation import CoverageEvaluator
from alc_hf.losses.pair_head import saved_pair_head
from alc_hf.models import load_encoder

REPO = Path(__file__).resolve().parents[1]
MODEL = ("alc_tcm", "clustered")
FIGURES = ("precision", "recall", "f1", "oracle_f1")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=table_quality.DATASETS, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", type=Path, help="default: outputs/pairwise_f1/<dataset>.json")
    args = parser.parse_args(argv)
    preset = table_quality.DATASETS[args.dataset]
    args.data_dir, args.text_fields, args.max_seq_length = preset.data_dir, preset.text_fields, preset.max_seq_length
    args.output = args.output or REPO / "outputs" / "pairwise_f1" / f"{args.dataset}.json"
    args.bi_encoder_results = REPO / "outputs" / "verifier_quality" / f"{args.dataset}_bi_encoders.json"
    args.models_from = args.bi_encoder_results.with_name(f"{args.bi_encoder_results.stem}_models")
    return args


def pairwise_figures(model: SentenceTransformer, pair_head: object, args: argparse.Namespace) -> dict[str, dict]:
    views = table_quality.load_views(args.data_dir, args.text_fields, "test")
    evaluator = CoverageEvaluator(*views, precision_at_k=(1,), batch_size=128, pair_head=pair_head, pairwise=True)
    return {name: report.pairwise.to_dict() for name, report in evaluator.compute_reports(model).items()}


def cell(values: list[float | None]) -> str:
    values = [value for value in values if value is not None]
    if not values:
        return "n/a"
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def table(results: dict) -> str:
    """The markdown table docs/benchmarks.md holds, from the JSON this script writes."""
    lines = ["| model [score] | seeds | precision | recall | F1 | oracle F1 |", "|---|---|---|---|---|---|"]
    for name, runs in results["rows"].items():
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cell([run[f] for run in runs]) for f in FIGURES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_dirs = {seed: args.models_from / f"{MODEL[0]}_{MODEL[1]}_seed{seed}" for seed in args.seeds}
    table_quality.train_missing_models(args.dataset, "_".join(MODEL), args.seeds, args.bi_encoder_results)
    off_the_shelf = load_encoder("sentence-transformers/all-MiniLM-L6-v2")
    off_the_shelf.max_seq_length = args.max_seq_length
    rows = {"all-MiniLM-L6-v2 off the shelf [cosine]": [pairwise_figures(off_the_shelf, None, args)["cosine"]]}
    for seed, folder in model_dirs.items():
        print(f"seed {seed}: {folder}", flush=True)
        for name, figures in pairwise_figures(SentenceTransformer(str(folder)), saved_pair_head(folder), args).items():
            rows.setdefault(f"ALC + TCM / clustered [{name}]", []).append(figures)
    results = {
        "settings": {"dataset": args.dataset, "data_dir": str(args.data_dir), "seeds": args.seeds},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": rows,
    }
    write_atomically(args.output, json.dumps(results, indent=2).encode())
    print(table(results))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
