"""What deciding new traffic costs: ``alc-hf match``'s Matcher against what a user writes today, and the approximate
index at a 1M-product catalog.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/match_speed.py routes     # Walmart-Amazon, all-MiniLM-L6-v2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/match_speed.py scale      # 1,000,000 synthetic products

``routes``: the catalog is Walmart-Amazon's tableB (22,074 Amazon offers, brand + title + modelno) and the traffic the
distinct Walmart offers of its train and test splits (1,578), embedded by the packaged all-MiniLM-L6-v2. The catalog
is embedded once, outside the timing, for both arms. Timed per repetition, the arms taking turns at going first: the
Matcher's cosine route (embed the queries, exact top-5, the threshold) against
``sentence_transformers.util.semantic_search`` over the same catalog embeddings plus the same threshold; the two must
take the same decisions (top-1 up to cosine ties within 1e-5, and the accepted set). Then the verifier route's cost
per query (a cross-encoder started from the same encoder: the cost, not its quality, is what is measured). The
threshold is the median top-1 cosine, so half the queries are accepted. Last, the Matcher on the onnxruntime
backends (``onnx``: fp32; ``onnx-int8``: weights quantized), catalog and queries embedded by each: queries per
second against the torch Matcher's, and at the same threshold the share of decisions that change (accepted or sent to
review, or another product accepted), the share of top-1s that change (review rows too), and for the queries whose
match is known the share whose outcome (accepted right, accepted wrong, review) changes and the precision reached.

``scale``: 1,000,000 products and 10,000 queries of 384 dims, random but clustered as in ``benchmarks/eval_scale.py``
(labels noisy copies of 8,192 centres, queries noisy copies of labels). The exact (flat) index against the IVF index
``alc-hf match`` picks above 200,000 products: build time, search time for the queries' top-5, the process's resident
memory each adds, and the share of queries whose top-1 they agree on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WALMART_AMAZON = REPO.parent / "shared" / "data" / "walmart_amazon"
TIE = 1e-5


def resident_bytes() -> int:
    """The process's resident memory now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def routes(args: argparse.Namespace) -> dict:
    import torch
    from sentence_transformers import util

    from alc_hf.data import read_product_tables
    from alc_hf.evaluation.matcher import AcceptRule, Matcher
    from alc_hf.models import DEFAULT_MODEL, load_encoder
    from alc_hf.models.onnx_encoder import OnnxEncoder
    from alc_hf.models.verifier import initial_verifier

    torch.set_num_threads(args.threads)
    data = read_product_tables(WALMART_AMAZON, "test", ("brand", "title", "modelno"))
    catalog = data.labels
    tables = read_product_tables(WALMART_AMAZON, "train", ("brand", "title", "modelno"))
    queries = sorted({*data.queries, *tables.queries})[: args.num_queries]
    model = load_encoder(DEFAULT_MODEL, device="cpu")
    ids = [str(i) for i in range(len(catalog))]

    probe = Matcher(model, AcceptRule("cosine", 0.0, "given"), batch_size=args.batch_size)
    probe.index(ids, catalog)
    threshold = float(np.median(probe.match(queries).scores[:, 0]))
    matcher = Matcher(model, AcceptRule("cosine", threshold, "given"), batch_size=args.batch_size)
    matcher._index = probe._index  # the catalog embedded once, outside the timing, for both arms
    matcher.catalog_ids, matcher.catalog_texts = probe.catalog_ids, probe.catalog_texts
    corpus = torch.from_numpy(np.array(probe._index.vectors))  # a writable copy, as a user's tensor

    def user_code() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        embedded = model.encode(queries, batch_size=args.batch_size, convert_to_tensor=True, normalize_embeddings=True)
        hits = util.semantic_search(embedded, corpus, top_k=5)
        top1 = np.array([hit[0]["corpus_id"] for hit in hits])
        score = np.array([hit[0]["score"] for hit in hits])
        return top1, score, score >= threshold

    times: dict[str, list[float]] = {"matcher": [], "semantic_search": []}
    for repetition in range(args.repeats):
        # The arms take turns going first: neither always runs on a cold or a warm machine.
        for arm in ("matcher", "semantic_search") if repetition % 2 == 0 else ("semantic_search", "matcher"):
            started = time.perf_counter()
            if arm == "matcher":
                decided = matcher.match(queries)
            else:
                top1, score, accepted = user_code()
            times[arm].append(time.perf_counter() - started)
    # The step after embedding (the same model call in both arms): search and threshold, on the same embeddings.
    embedded = matcher.model.encode_query(queries, batch_size=args.batch_size, normalize_embeddings=True)
    as_tensor = torch.from_numpy(np.array(embedded))
    search_times: dict[str, list[float]] = {"matcher": [], "semantic_search": []}
    for _ in range(args.search_repeats):
        started = time.perf_counter()
        found = matcher._index.search(embedded, 5)
        _ = found.scores[:, 0] >= threshold
        search_times["matcher"].append(time.perf_counter() - started)
        started = time.perf_counter()
        hits = util.semantic_search(as_tensor, corpus, top_k=5)
        _ = np.array([hit[0]["score"] for hit in hits]) >= threshold
        search_times["semantic_search"].append(time.perf_counter() - started)
    search_medians = {arm: statistics.median(values) for arm, values in search_times.items()}
    differ = np.flatnonzero(decided.ids[:, 0] != top1)
    tied = np.abs(decided.scores[differ, 0] - score[differ]) <= TIE
    same_accepted = bool(np.array_equal(decided.accepted, accepted))
    verifier = initial_verifier(DEFAULT_MODEL, seed=0)
    verifying = Matcher(model, AcceptRule("verifier", 0.5, "given"), verifier=verifier, batch_size=args.batch_size)
    verifying._index, verifying.catalog_ids, verifying.catalog_texts = probe._index, ids, catalog
    started = time.perf_counter()
    verifying.match(queries)
    verifier_seconds = time.perf_counter() - started
    # What a decision means for the queries whose matches are known (Walmart-Amazon's positive pairs of train and
    # test): accepted and right (2), accepted and wrong (1), sent to review (0).
    known: dict[str, set[int]] = {}
    for split in (data, tables):
        for query, positives in zip(split.queries, split.positives, strict=True):
            known.setdefault(query, set()).update(int(label) for label in positives)
    labelled = np.array([bool(known.get(query)) for query in queries])
    texts = np.array(catalog, dtype=object)

    def outcomes(decided_here) -> np.ndarray:
        right = np.array(
            [int(top) in known.get(query, ()) for query, top in zip(queries, decided_here.ids[:, 0], strict=True)]
        )
        return np.where(decided_here.accepted, 1 + right, 0)

    def precision(outcome: np.ndarray) -> float:
        accepted = outcome[labelled] > 0
        return float((outcome[labelled] == 2).sum() / max(accepted.sum(), 1))

    torch_outcome = outcomes(decided)
    gaps = decided.scores[:, 0] - decided.scores[:, 1]
    backends = {}
    for backend in ("onnx", "onnx-int8"):
        encoder = OnnxEncoder.from_sentence_transformer(
            model, backend, REPO / "outputs" / "match_speed" / "encoders", "all-MiniLM-L6-v2", threads=args.threads
        )
        on_backend = Matcher(encoder, matcher.rule, batch_size=args.batch_size)
        started = time.perf_counter()
        on_backend.index(ids, catalog)
        indexed = time.perf_counter() - started
        seconds = []
        for _ in range(args.backend_repeats):
            started = time.perf_counter()
            other = on_backend.match(queries)
            seconds.append(time.perf_counter() - started)
        flipped = other.accepted != decided.accepted
        top1_changed = other.ids[:, 0] != decided.ids[:, 0]
        other_product = top1_changed & (texts[other.ids[:, 0]] != texts[decided.ids[:, 0]])
        changed = flipped | (other.accepted & decided.accepted & other_product)
        outcome = outcomes(other)
        backends[backend] = {
            "catalog_embedding_seconds": indexed,
            "seconds": seconds,
            "queries_per_second": len(queries) / statistics.median(seconds),
            "speedup_over_torch_matcher": statistics.median(times["matcher"]) / statistics.median(seconds),
            "decisions_changed_share": float(changed.mean()),
            "accept_review_changed_share": float(flipped.mean()),
            "accepted_product_changed_share": float((changed & ~flipped).mean()),
            "top1_changed_share": float(top1_changed.mean()),
            "labelled_outcome_changed_share": float((outcome != torch_outcome)[labelled].mean()),
            "labelled_precision": precision(outcome),
        }
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    return {
        "catalog": len(catalog),
        "queries": len(queries),
        "threshold": threshold,
        "accepted_share": float(decided.accepted.mean()),
        "seconds": times,
        "queries_per_second": {arm: len(queries) / seconds for arm, seconds in medians.items()},
        "ratio_matcher_over_semantic_search": medians["semantic_search"] / medians["matcher"],
        "search_and_threshold_seconds": search_medians,
        "search_ratio_matcher_over_semantic_search": search_medians["semantic_search"] / search_medians["matcher"],
        "top1_differences": int(differ.size),
        "top1_differences_not_ties": int((~tied).sum()),
        "same_accepted_set": same_accepted,
        "verifier_ms_per_query": 1000 * verifier_seconds / len(queries),
        "cosine_ms_per_query": 1000 * medians["matcher"] / len(queries),
        "labelled_queries": int(labelled.sum()),
        "labelled_precision_torch": precision(torch_outcome),
        "top1_within_0.001_of_top2_share": float((gaps < 1e-3).mean()),
        "top1_within_0.0005_of_top2_share": float((gaps < 5e-4).mean()),
        "backends": backends,
    }


def scale(args: argparse.Namespace) -> dict:
    from alc_hf.core.retrieval import LabelIndex

    rng = np.random.default_rng(args.seed)
    dim = 384
    centres = rng.standard_normal((8192, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    corpus = centres[rng.integers(0, len(centres), args.num_labels)]
    corpus += np.float32(0.7 / np.sqrt(dim)) * rng.standard_normal(corpus.shape, dtype=np.float32)
    queries = corpus[rng.integers(0, args.num_labels, args.num_queries)]
    queries += np.float32(0.5 / np.sqrt(dim)) * rng.standard_normal(queries.shape, dtype=np.float32)
    results = {}
    top1 = {}
    for kind, options in (("flat", {}), ("ivf", {"nlist": args.nlist, "nprobe": args.nprobe})):
        before = resident_bytes()
        started = time.perf_counter()
        index = LabelIndex(corpus, kind=kind, **options)
        built = time.perf_counter() - started
        started = time.perf_counter()
        found = index.search(queries, 5)
        searched = time.perf_counter() - started
        top1[kind] = found
        results[kind] = {
            "build_seconds": built,
            "search_seconds": searched,
            "queries_per_second": len(queries) / searched,
            "resident_bytes_added": resident_bytes() - before,
            "options": index.options,
        }
        del index
    agree = top1["flat"].ids[:, 0] == top1["ivf"].ids[:, 0]
    tie = np.abs(top1["flat"].scores[:, 0] - top1["ivf"].scores[:, 0]) <= TIE
    results["top1_agreement"] = float(agree.mean())
    results["top1_agreement_up_to_ties"] = float((agree | tie).mean())
    results["num_labels"], results["num_queries"] = args.num_labels, args.num_queries
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("routes", "scale"))
    parser.add_argument("--num_queries", type=int, default=None, help="routes: all of them by default; scale: 10,000")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--search_repeats", type=int, default=20)
    parser.add_argument("--backend_repeats", type=int, default=3)
    parser.add_argument("--num_labels", type=int, default=1_000_000)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="default: outputs/match_speed/<part>.json")
    args = parser.parse_args()
    if args.num_queries is None and args.part == "scale":
        args.num_queries = 10_000
    result = routes(args) if args.part == "routes" else scale(args)
    output = args.output or REPO / "outputs" / "match_speed" / f"{args.part}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
