"""Where a calibrated threshold's wrong accepts come from, on a DeepMatcher-layout test split.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/accept_breakdown.py outputs/verifier_quality/wdc.json

Reads a ``verifier_quality.py`` JSON (each run keeps its test top-1 scores and outcomes in the block view) and, for
each run and accept score, splits the test queries accepted at the threshold calibrated for ``--target`` into:
queries with a match and without one (whatever is accepted there is wrong). Where ``tableA.csv`` has a
``cluster_id`` column (WDC), queries with a match are split further into seen and unseen products: "seen" means that
the query offer's cluster is the cluster of a query offer in ``train.csv`` (left side only: the two tables' cluster
ids are not comparable), so it is a lower bound on what the model saw. The accepted counts are checked against the
report's own before anything is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from alc_hf.data import read_product_tables

WITHOUT_MATCH = "without a match"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a verifier_quality.py JSON")
    parser.add_argument("--target", type=float, default=0.9, help="the target precision whose threshold is applied")
    return parser.parse_args(argv)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def query_groups(data_dir: Path) -> tuple[list[str], np.ndarray]:
    """The group names (the last is :data:`WITHOUT_MATCH`) and each test query's group, in the order of the block
    view's queries."""
    matched = {row["ltable_id"] for row in read_rows(data_dir / "test.csv") if row["label"] == "1"}
    query_ids = read_product_tables(data_dir, split="test", text_fields=("title",)).query_ids
    if query_ids is None:
        raise ValueError(f"{data_dir}: the test split's queries carry no ids")
    clusters = {row["id"]: row.get("cluster_id") for row in read_rows(data_dir / "tableA.csv")}
    if None in clusters.values():
        names = ["with a match", WITHOUT_MATCH]
        return names, np.array([names[0] if query in matched else WITHOUT_MATCH for query in query_ids])
    seen = {clusters[row["ltable_id"]] for row in read_rows(data_dir / "train.csv")}
    names = ["with a match, seen", "with a match, unseen", WITHOUT_MATCH]
    groups = [
        WITHOUT_MATCH if query not in matched else names[0] if clusters[query] in seen else names[1]
        for query in query_ids
    ]
    return names, np.array(groups)


def breakdown(entry: dict, names: list[str], groups: np.ndarray, target: float, name: str) -> list[tuple[int, int]]:
    """(accepted, accepted and right) per group of ``names`` at the threshold calibrated for ``target``."""
    (coverage,) = [c for c in entry["report"]["coverage_at"]["1"] if c["target_precision"] == target]
    scores = np.array([np.nan if score is None else score for score in entry["test_top1"]["scores"]])
    correct = np.array(entry["test_top1"]["correct"], dtype=bool)
    if len(scores) != len(groups) or correct[groups == WITHOUT_MATCH].any():
        raise ValueError(f"{name}: the stored test top-1s do not line up with the test split's queries")
    accepted = scores >= coverage["threshold"] if coverage["reachable"] else np.zeros(len(scores), dtype=bool)
    if int(accepted.sum()) != coverage["test"]["num_accepted"]:
        raise ValueError(f"{name}: {accepted.sum()} accepted here, {coverage['test']['num_accepted']} in the report")
    return [(int(accepted[groups == group].sum()), int((accepted & correct)[groups == group].sum())) for group in names]


def precision_with_match(counts: list[tuple[int, int]]) -> float:
    """Right over accepted, over every group but the last (:data:`WITHOUT_MATCH`)."""
    accepted = sum(accepted for accepted, _ in counts[:-1])
    return sum(right for _, right in counts[:-1]) / accepted if accepted else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = json.loads(args.results.read_text())
    names, groups = query_groups(Path(results["settings"]["data_dir"]))
    print("test queries: " + ", ".join(f"{(groups == group).sum()} {group}" for group in names))
    print(f"\n### accepted at the valid threshold for {args.target:.0%} (right / accepted)\n")
    print("| bi-encoder [accept score] | seed | " + " | ".join(names) + " | precision with a match |")
    print("|---|---|" + "---|" * (len(names) + 1))
    per_route: dict[str, list[list[tuple[int, int]]]] = {}
    for run in results["runs"]:
        for accept_score, entry in run["accept_scores"].items():
            name = f"{run['arm']} [{accept_score}]"
            counts = breakdown(entry, names, groups, args.target, f"{name}, seed {run['seed']}")
            per_route.setdefault(name, []).append(counts)
            cells = " | ".join(f"{right} / {accepted}" for accepted, right in counts)
            print(f"| {name} | {run['seed']} | {cells} | {precision_with_match(counts):.3f} |")

    print("\n### summed over seeds (right / accepted); precision with a match: lowest–highest seed\n")
    print("| bi-encoder [accept score] | seeds | " + " | ".join(names) + " | all | precision with a match |")
    print("|---|---|" + "---|" * (len(names) + 2))
    for name, runs in per_route.items():
        totals = np.array(runs).sum(axis=0)  # (group, [accepted, right]) summed over seeds
        cells = " | ".join(f"{right} / {accepted}" for accepted, right in [*totals, totals.sum(axis=0)])
        precisions = [precision_with_match(counts) for counts in runs]
        print(f"| {name} | {len(runs)} | {cells} | {min(precisions):.3f}–{max(precisions):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
