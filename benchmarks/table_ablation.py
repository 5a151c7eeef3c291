"""Ablations on the valid split only (test.csv is never read): which ALC / TCM settings buy coverage, under
clustered batches, at the dataset's real budget. The library's defaults are chosen from this table.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/table_ablation.py --dataset walmart_amazon --seeds 0 1
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/table_ablation.py --dataset wdc --seeds 0
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/table_ablation.py --dataset wdc --variants default "k = 2"

Each variant is one ``benchmarks/table_quality.py`` run with ``--split_for_selection valid``: the valid queries are
split at random (fixed seed) into a calibration half and a held-out half; thresholds are calibrated on the first and
every figure is measured on the second. Every variant trains with the same rows, budget and seeds (any other
``table_quality.py`` option given here is passed on). Results go to one JSON per variant under ``--output_dir``
(``--resume`` is always on, so an interrupted ablation continues), and the table is printed from them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import table_quality

# name -> (arm, batching, options of table_quality.py). "default" is the library's TCMLoss(ALCLoss(softmax)).
VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    "off the shelf": (table_quality.OFF_THE_SHELF, "clustered", []),
    "mnrl": ("mnrl", "clustered", []),
    "mnrl, random batches": ("mnrl", "random", []),
    "mnrl + tcm": ("mnrl_tcm", "clustered", []),
    "softmax + tcm (no ALC)": ("softmax_tcm", "clustered", []),
    "default": ("alc_tcm", "clustered", []),
    "default, random batches": ("alc_tcm", "random", []),
    "linear head (Linear(4d, 1))": ("alc_tcm", "clustered", ["--pair_head_hidden_dim", "0"]),
    "L_qb over the whole batch": ("alc_tcm", "clustered", ["--num_negatives", "100000"]),
    "k = 2": ("alc_tcm", "clustered", ["--num_negatives", "2"]),
    "β1 = β2 = 0.3": ("alc_tcm", "clustered", ["--ql_weight", "0.3", "--qb_weight", "0.3"]),
    "β1 = β2 = 3": ("alc_tcm", "clustered", ["--ql_weight", "3", "--qb_weight", "3"]),
    "head warm-up 40 steps": ("alc_tcm", "clustered", ["--head_warmup_steps", "40"]),
    "TCM m+ = 0.8": ("alc_tcm", "clustered", ["--pos_margin", "0.8"]),
    "TCM m- = 0.4": ("alc_tcm", "clustered", ["--neg_margin", "0.4"]),
    "TCM m- = 0.6": ("alc_tcm", "clustered", ["--neg_margin", "0.6"]),
    "cluster size 8": ("alc_tcm", "clustered", ["--cluster_size", "8"]),
}
REPO = Path(__file__).resolve().parents[1]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def table(results: dict[str, dict]) -> str:
    columns = table_quality.COLUMNS
    lines = [
        "| variant | arm / batching | options | " + " | ".join(header for _, header in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for name, result in results.items():
        arm, batching, options = VARIANTS[name]
        for row, entry in result["summary"].items():
            figures = " | ".join(table_quality.cell(entry["figures"].get(metric)) for metric, _ in columns)
            label = f"{name} {row[row.index('[') :]}" if "[" in row else name  # e.g. "default [pair_head accept]"
            lines.append(f"| {label} | {arm} / {batching} | {' '.join(options) or '-'} | {figures} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=table_quality.DATASETS, required=True)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--output_dir", type=Path, help="default: outputs/table_ablation/<dataset>")
    args, passed_on = parser.parse_known_args(argv)
    for reserved in ("--arms", "--batching", "--split_for_selection", "--output", "--resume", "--overwrite"):
        if reserved in passed_on:
            parser.error(f"{reserved} is set by the ablation itself")
    output_dir = args.output_dir or REPO / "outputs" / "table_ablation" / args.dataset

    results = {}
    for number, name in enumerate(args.variants, start=1):
        arm, batching, options = VARIANTS[name]
        output = output_dir / f"{slug(name)}.json"
        print(f"\n=== variant {number}/{len(args.variants)}: {name} ({arm} / {batching} {' '.join(options)})")
        table_quality.main(
            [
                "--dataset", args.dataset,
                "--arms", arm,
                "--batching", batching,
                "--seeds", *map(str, args.seeds),
                "--split_for_selection", "valid",
                "--output", str(output),
                "--resume",
                *options,
                *passed_on,
            ]
        )  # fmt: skip
        results[name] = json.loads(output.read_text())

    print(
        f"\n### Ablation on {args.dataset}: block view, held-out valid half (thresholds calibrated on the other "
        f"half), mean ± std over seeds {args.seeds}\n"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
