"""Cost benchmark: clustering and planning one epoch of ClusteredBatchSampler at LF-AmazonTitles-131K size, against
the random plan of UniqueQueryLabelBatchSampler, and how hard the in-batch negatives of both plans are.

    .venv/bin/python benchmarks/cluster_cost.py                         # 294,805 queries x 384 dims, batch 32
    .venv/bin/python benchmarks/cluster_cost.py --cluster_size 16 --one_row_per_query
    .venv/bin/python benchmarks/cluster_cost.py --num_queries 20000     # a quick, smaller run

The embeddings are synthetic, float32 and clustered, standing in for the encoder's: a two-level Gaussian mixture
(512 categories, 16,384 product families of 8 labels, 131,073 labels; a label is its family's centre plus noise, a
query a noisier copy of one of its positive labels, which are 1 + Poisson(1.29) labels of one family, about 2.29 per
query as in LF-AmazonTitles-131K). The embedding pass is excluded: with all-MiniLM-L6-v2 it costs about n / 230
seconds on this CPU, far more than the clustering. Each arm runs in a fresh child process that builds the same data,
then times the sampler (constructing it reads the ids; ``set_embeddings`` clusters; ``plan`` orders and packs the
epoch) and reads its peak RSS over these steps (VmHWM, reset once the data is built: the peak is the data plus what
the sampler adds; the data's own RSS is shown beside it). Hardness (``alc_hf.data.batch_hardness``: the mean cosine
between a query and its hardest in-batch negative) is computed afterwards on a sample of batches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
from datasets import Dataset

ARMS = ("random", "clustered")


def synthetic_data(args: argparse.Namespace) -> tuple[Dataset, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training rows (``anchor``, ``label`` = [positive id, query's positive ids, -1 padded]), query and label
    embeddings, and each row's query and label index."""
    rng = np.random.default_rng(args.seed)
    dim, num_labels, num_families = args.dim, args.num_labels, args.num_families
    categories = rng.standard_normal((args.num_categories, dim), dtype=np.float32)
    families = categories[np.arange(num_families) % args.num_categories]
    families += rng.standard_normal(families.shape, dtype=np.float32)
    label_family = np.arange(num_labels) % num_families
    labels = families[label_family] + rng.standard_normal((num_labels, dim), dtype=np.float32)
    base = rng.integers(0, num_labels, args.num_queries)
    queries = labels[base] + np.float32(0.7) * rng.standard_normal((args.num_queries, dim), dtype=np.float32)
    labels /= np.linalg.norm(labels, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    # Labels of family f are f, f + F, f + 2F, ...: extra positives are other members of the base label's family.
    family_size = np.bincount(label_family, minlength=num_families)
    extra = np.minimum(rng.poisson(1.29, args.num_queries), family_size[label_family[base]] - 1)
    width = int(extra.max()) + 1
    positives = np.full((args.num_queries, width), -1, dtype=np.int64)
    positives[:, 0] = base
    for column in range(1, width):
        has = extra >= column
        offset = (base // num_families + column) % family_size[label_family[base]]
        positives[has, column] = (label_family[base] + offset * num_families)[has]
    row_query, column = np.nonzero(positives >= 0)
    row_label = positives[row_query, column]
    label_column = np.concatenate([row_label[:, None], positives[row_query]], axis=1)
    anchors = pa.array(np.char.add("q", row_query.astype(str)), type=pa.string())
    ids = pa.FixedSizeListArray.from_arrays(pa.array(label_column.reshape(-1)), label_column.shape[1])
    rows = Dataset(pa.table({"anchor": anchors, "label": ids}))
    return rows, queries, labels, row_query, row_label


def memory_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def reset_peak_memory() -> None:
    """Start VmHWM again from the current RSS (Linux), so the peak leaves out building the data."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def sampled_hardness(
    plan: list[list[int]],
    data: tuple[Dataset, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    args: argparse.Namespace,
) -> float:
    """batch_hardness over ``args.hardness_batches`` random batches of the plan (compact per-row arrays)."""
    from alc_hf.core.clustering import batch_hardness

    rows, queries, labels, row_query, row_label = data
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(plan), size=min(args.hardness_batches, len(plan)), replace=False)
    batches = [plan[i] for i in chosen]
    served = np.fromiter((row for batch in batches for row in batch), dtype=np.int64)
    local = np.arange(len(served))
    starts = np.cumsum([0, *map(len, batches)])
    compact = [local[start:stop].tolist() for start, stop in zip(starts[:-1], starts[1:], strict=True)]
    label_column = np.asarray(rows.select(served)["label"])
    return batch_hardness(
        compact, queries[row_query[served]], labels[row_label[served]], label_column[:, 0], label_column[:, 1:]
    )


def measure(arm: str, args: argparse.Namespace) -> None:
    from alc_hf.training import ClusteredBatchSampler, UniqueQueryLabelBatchSampler

    data = synthetic_data(args)
    rows, queries = data[0], data[1]
    baseline = memory_mb("VmRSS")
    reset_peak_memory()
    result: dict[str, float | int | str] = {"arm": arm, "rows": len(rows), "queries": len(queries)}
    options = dict(
        batch_size=args.batch_size, drop_last=False, seed=args.seed, one_row_per_query=args.one_row_per_query
    )
    start = time.perf_counter()
    if arm == "random":
        sampler = UniqueQueryLabelBatchSampler(rows, **options)
    else:
        sampler = ClusteredBatchSampler(rows, cluster_size=args.cluster_size, **options)
    result["construct_s"] = time.perf_counter() - start
    if arm == "clustered":
        start = time.perf_counter()
        sampler.set_embeddings(queries)  # rows are grouped by query in order: item k is query k
        result["cluster_s"] = time.perf_counter() - start
    start = time.perf_counter()
    plan = sampler.plan()
    result["plan_s"] = time.perf_counter() - start
    result["batches"] = len(plan)
    result["baseline_rss_mb"] = baseline
    result["peak_rss_mb"] = memory_mb("VmHWM")
    result["hardness"] = sampled_hardness(plan, data, args)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_queries", type=int, default=294_805)
    parser.add_argument("--num_labels", type=int, default=131_073)
    parser.add_argument("--num_families", type=int, default=16_384)
    parser.add_argument("--num_categories", type=int, default=512)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--cluster_size", type=int, default=4)
    parser.add_argument("--one_row_per_query", action="store_true", help="one random positive per query (both plans)")
    parser.add_argument("--hardness_batches", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args)
        return
    results = []
    for arm in ARMS:
        command = [sys.executable, __file__, *sys.argv[1:], "--measure", arm]
        completed = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    first = results[0]
    print(
        f"{first['queries']:,} queries x {args.dim} dims, {first['rows']:,} rows, batch {args.batch_size}, "
        f"cluster_size {args.cluster_size}{', one row per query' if args.one_row_per_query else ''}; "
        "embedding pass excluded"
    )
    print(
        f"{'plan':<10} {'construct s':>11} {'cluster s':>9} {'plan s':>7} {'batches':>8} {'peak RSS MB':>11} "
        f"{'(data MB)':>9} {'hardness':>8}"
    )
    for result in results:
        cluster = f"{result['cluster_s']:.1f}" if "cluster_s" in result else "-"
        print(
            f"{result['arm']:<10} {result['construct_s']:>11.1f} {cluster:>9} {result['plan_s']:>7.1f} "
            f"{result['batches']:>8,} {result['peak_rss_mb']:>11,.0f} {result['baseline_rss_mb']:>9,.0f} "
            f"{result['hardness']:>8.3f}"
        )


if __name__ == "__main__":
    main()
