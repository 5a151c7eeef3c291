"""Scale benchmark: exact top-k with filter pairs over an LF-AmazonTitles-131K-sized corpus, LabelIndex(kind="flat")
against a plain reference (chunked torch matmul + torch.topk, filtered pairs masked to -inf), measured in the same run.

    .venv/bin/python benchmarks/eval_scale.py                       # 131,073 labels, 134,835 queries, 384 dims
    .venv/bin/python benchmarks/eval_scale.py --num_queries 8192    # a quick, smaller run

Embeddings are random but clustered (labels are noisy copies of 8,192 centres, queries noisy copies of labels: of
their first filtered label where the query has filter pairs, as in the LF datasets, else of a random one), so the
filter pairs of the real test split bite. Each arm runs in a fresh child process that loads the embeddings, then
times building its index or normalising plus searching, and reads its own peak RSS (VmHWM); arms alternate over the
repetitions and the medians are compared. The two arms' top-k of the last repetition are checked to agree up to ties.
Targets: flat / reference <= 1.3, flat peak RSS < 3 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LF_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "lf_amazontitles_131k_partial"
ARMS = ("flat", "reference")
# Scores of the two arms come from different BLAS libraries; top-k lists that differ only where scores are this close
# are the same ranking up to ties.
SCORE_TOLERANCE = 1e-5


def write_embeddings(work_dir: Path, args: argparse.Namespace) -> None:
    from alc_hf.data import read_filter_pairs

    rng = np.random.default_rng(args.seed)
    dim = args.dim
    centres = rng.standard_normal((8192, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    corpus = centres[rng.integers(0, len(centres), args.num_labels)]
    corpus += np.float32(0.7 / np.sqrt(dim)) * rng.standard_normal(corpus.shape, dtype=np.float32)
    pairs = read_filter_pairs(args.filter_file)
    pairs = pairs[(pairs[:, 0] < args.num_queries) & (pairs[:, 1] < args.num_labels)]
    base = rng.integers(0, args.num_labels, args.num_queries)
    # The LF filter pairs are a product's own reciprocal entries: its nearest labels, which the filter must remove.
    rows, first = np.unique(pairs[:, 0], return_index=True)
    base[rows] = pairs[first, 1]
    queries = corpus[base]
    queries += np.float32(0.5 / np.sqrt(dim)) * rng.standard_normal(queries.shape, dtype=np.float32)
    np.save(work_dir / "corpus.npy", corpus)
    np.save(work_dir / "queries.npy", queries)
    np.save(work_dir / "filter_pairs.npy", pairs)


def run_flat(corpus: np.ndarray, queries: np.ndarray, pairs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from alc_hf.core.retrieval import LabelIndex

    top = LabelIndex(corpus, kind="flat").search(queries, k, filter_pairs=pairs)
    return top.ids, top.scores


def run_reference(
    corpus: np.ndarray, queries: np.ndarray, pairs: np.ndarray, k: int, chunk_size: int
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    labels = torch.from_numpy(corpus)
    labels /= labels.norm(dim=1, keepdim=True)
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    ids = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    # One preallocated score block: allocating a fresh [chunk, num_labels] matrix per chunk costs page faults.
    block = torch.empty(chunk_size, len(corpus))
    with torch.inference_mode():
        for start in range(0, len(queries), chunk_size):
            stop = min(start + chunk_size, len(queries))
            chunk = torch.from_numpy(queries[start:stop])
            chunk = chunk / chunk.norm(dim=1, keepdim=True)
            out = block[: stop - start]
            torch.mm(chunk, labels.T, out=out)
            lo, hi = np.searchsorted(pairs[:, 0], [start, stop])
            local = torch.from_numpy(pairs[lo:hi])
            out[local[:, 0] - start, local[:, 1]] = -torch.inf
            values, indices = torch.topk(out, k, dim=1)
            ids[start:stop] = indices.numpy()
            scores[start:stop] = values.numpy()
    return ids, scores


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). ru_maxrss is not used: a child started by subprocess inherits
    the parent's peak into it across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line: peak memory is measured on Linux only")


def measure(args: argparse.Namespace) -> None:
    # Each arm imports only what it needs, before the clock starts.
    if args.arm == "flat":
        import alc_hf.core.retrieval  # noqa: F401
    else:
        import torch  # noqa: F401
    imported_mb = peak_rss_mb()
    corpus = np.load(args.work_dir / "corpus.npy")
    queries = np.load(args.work_dir / "queries.npy")
    pairs = np.load(args.work_dir / "filter_pairs.npy")
    loaded_mb = peak_rss_mb()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if args.arm == "flat":
        ids, scores = run_flat(corpus, queries, pairs, args.k)
    else:
        ids, scores = run_reference(corpus, queries, pairs, args.k, args.reference_chunk)
    seconds = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = cpu_end.ru_utime + cpu_end.ru_stime - cpu_start.ru_utime - cpu_start.ru_stime
    peak_mb = peak_rss_mb()
    np.savez(args.work_dir / f"{args.arm}_k{args.k}.npz", ids=ids, scores=scores)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "load_1min": os.getloadavg()[0],
                "peak_rss_mb": peak_mb,
                "imported_rss_mb": imported_mb,
                "loaded_rss_mb": loaded_mb,
            }
        )
    )


def child(args: argparse.Namespace, arm: str, k: int) -> dict:
    command = [sys.executable, __file__, "--arm", arm, "--k", str(k), "--work_dir", str(args.work_dir)]
    command += ["--reference_chunk", str(args.reference_chunk)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def agreement(work_dir: Path, k: int, pairs: np.ndarray, num_labels: int) -> str:
    flat, reference = np.load(work_dir / f"flat_k{k}.npz"), np.load(work_dir / f"reference_k{k}.npz")
    filter_keys = pairs[:, 0] * num_labels + pairs[:, 1]
    for name, result in (("flat", flat), ("reference", reference)):
        rows = np.arange(len(result["ids"]))[:, None]
        if np.isin(rows * num_labels + result["ids"], filter_keys).any():
            raise AssertionError(f"{name} returned a filtered (query, label) pair at k={k}")
    if (flat["ids"] < 0).any():
        raise AssertionError(f"flat returned fewer than k={k} labels for some query")
    score_gap = np.abs(flat["scores"] - reference["scores"]).max()
    if score_gap > SCORE_TOLERANCE:
        raise AssertionError(f"k={k}: the arms' scores differ by up to {score_gap:.2e} at the same rank")
    differ = int((flat["ids"] != reference["ids"]).sum())
    return (
        f"k={k}: top-k ids identical at {flat['ids'].size - differ:,} of {flat['ids'].size:,} places; "
        f"the {differ:,} others are near-ties (scores at every rank within {score_gap:.1e})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_labels", type=int, default=131073)
    parser.add_argument("--num_queries", type=int, default=134835)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference_chunk", type=int, default=512, help="queries per matmul in the reference")
    parser.add_argument("--filter_file", type=Path, default=LF_DIR / "filter_labels_test.txt")
    parser.add_argument("--work_dir", type=Path, help="where embeddings and results go (a temporary folder if unset)")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        measure(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        if args.work_dir is None:
            args.work_dir = Path(scratch)
        args.work_dir.mkdir(parents=True, exist_ok=True)
        write_embeddings(args.work_dir, args)
        pairs = np.load(args.work_dir / "filter_pairs.npy")
        print(
            f"{args.num_labels:,} labels, {args.num_queries:,} queries, dim {args.dim}, "
            f"{len(pairs):,} filter pairs (max {np.bincount(pairs[:, 0]).max()} per query)",
            flush=True,
        )
        results: dict[tuple[int, str], list[dict]] = {}
        for k in args.ks:
            for rep in range(args.reps):
                for arm in ARMS if rep % 2 == 0 else ARMS[::-1]:
                    measured = child(args, arm, k)
                    results.setdefault((k, arm), []).append(measured)
                    print(f"k={k} rep {rep + 1} {arm}: {json.dumps(measured)}", flush=True)
        checks = [agreement(args.work_dir, k, pairs, args.num_labels) for k in args.ks]

    print(
        "\n| k | arm | median wall s | runs wall s (1-min load) | median CPU s | peak RSS MB | loaded MB | flat / ref |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k in args.ks:
        wall = {arm: statistics.median(r["seconds"] for r in results[(k, arm)]) for arm in ARMS}
        cpu = {arm: statistics.median(r["cpu_seconds"] for r in results[(k, arm)]) for arm in ARMS}
        for arm in ARMS:
            runs = ", ".join(f"{r['seconds']:.1f} ({r['load_1min']:.1f})" for r in results[(k, arm)])
            peak = max(r["peak_rss_mb"] for r in results[(k, arm)])
            loaded = max(r["loaded_rss_mb"] for r in results[(k, arm)])
            ratio = f"{wall['flat'] / wall['reference']:.2f} wall, {cpu['flat'] / cpu['reference']:.2f} CPU"
            print(
                f"| {k} | {arm} | {wall[arm]:.1f} | {runs} | {cpu[arm]:.1f} | {peak:,.0f} | {loaded:,.0f} | "
                f"{ratio if arm == 'flat' else ''} |"
            )
    print()
    for line in checks:
        print(line)


if __name__ == "__main__":
    main()
