"""Where the test sequences of ``alc-hf certify`` start: the strictest start alone against several, on simulated
traffic whose precision curve is known (no benchmark's labels are read, so the rule is not fitted to them).

    .venv/bin/python benchmarks/certify_starts.py

Each traffic holds 2,000 top-1 predictions, ranked by score, each right with the probability its curve gives at its
rank; the whole traffic is the region. For each budget, ``--draws`` random samples certify precision 0.9 at
delta 0.05 (``alc_hf.core.metrics.certify_threshold``) with ``start_shares=()`` (one sequence from where an
all-correct sample could certify: the procedure before several starts) and with the default
(:data:`~alc_hf.core.metrics.certify.START_SHARES`); the table gives the mean certified coverage, and the oracle's
(the most coverage at which the traffic reaches 0.9), and the share of draws whose threshold misses 0.9.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from alc_hf.core.metrics.certify import START_SHARES, certify_threshold, draw_order

REPO = Path(__file__).resolve().parents[1]
SIZE = 2000
# Precision by rank (0 the best-scored, 1 the worst): the two traffics, one a little under 0.95 at the top
# then 0.8, and two falling as a trained model's do.
TRAFFICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "0.95 everywhere": lambda rank: np.full_like(rank, 0.95),
    "top 3% at 0.80, the rest 0.97": lambda rank: np.where(rank < 0.03, 0.80, 0.97),
    "0.95 on the best half, 0.80 below": lambda rank: np.where(rank < 0.5, 0.95, 0.80),
    "falling from 1.0 to 0.6": lambda rank: 1.0 - 0.4 * rank,
    "falling from 1.0 to 0.05": lambda rank: np.clip(1.05 - rank, 0.0, 1.0),
}
STARTS = {"strictest alone": (), "several": START_SHARES}


def oracle_coverage(correct: np.ndarray, target: float) -> float:
    precision = np.cumsum(correct) / np.arange(1, correct.size + 1)
    reaching = np.flatnonzero(precision >= target)
    return float((reaching[-1] + 1) / correct.size) if reaching.size else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", nargs="+", type=int, default=[50, 100, 200, 400])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--output", type=Path, default=REPO / "outputs" / "certify_starts.json")
    args = parser.parse_args()
    scores = np.linspace(1.0, 0.0, SIZE, endpoint=False)
    results = {}
    lines = [
        "| traffic | oracle | labels | " + " | ".join(f"coverage, {name}" for name in STARTS) + " | misses (several) |",
        "|---|---|---|" + "---|" * len(STARTS) + "---|",
    ]
    for name, precision_at in TRAFFICS.items():
        correct = np.random.default_rng(1).uniform(0, 1, SIZE) < precision_at(np.arange(SIZE) / SIZE)
        oracle = oracle_coverage(correct, 0.9)
        for budget in args.budgets:
            coverage = {starts: [] for starts in STARTS}
            misses = 0
            for draw in range(args.draws):
                labelled = draw_order(scores, scores[-1], seed=draw)[:budget]
                for starts, shares in STARTS.items():
                    result = certify_threshold(
                        scores,
                        labelled,
                        correct[labelled],
                        0.9,
                        scores[-1],
                        0.05,
                        region_size=SIZE,
                        start_shares=shares,
                    )
                    coverage[starts].append(result.coverage)
                    if starts == "several" and result.certified:
                        misses += correct[: result.num_accepted].mean() < 0.9
            means = {starts: float(np.mean(values)) for starts, values in coverage.items()}
            results[f"{name} / {budget}"] = {"oracle": oracle, "coverage": means, "misses": misses / args.draws}
            cells = " | ".join(f"{means[starts]:.3f}" for starts in STARTS)
            lines.append(f"| {name} | {oracle:.3f} | {budget} | {cells} | {misses / args.draws:.3f} |")
            print(lines[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
