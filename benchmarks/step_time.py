"""Training step time of ALC + TCM against MultipleNegativesRankingLoss, measured in the same run.

    .venv/bin/python benchmarks/step_time.py --batch_size 32 --steps 20

Each step (forward, backward, AdamW step) alternates between the two losses so that machine noise hits both alike;
the figure to read is the ratio of the medians. Uses the offline all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from alc_hf import ALCLoss, TCMLoss
from alc_hf.data import product_pairs
from alc_hf.models import load_encoder


def training_step(loss: torch.nn.Module, optimizer: torch.optim.Optimizer, features: list, labels) -> float:
    start = time.perf_counter()
    optimizer.zero_grad()
    result = loss(features, labels)
    total = sum(result.values()) if isinstance(result, dict) else result
    total.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_encoder(device="cpu")
    rows = product_pairs()
    repeats = -(-args.batch_size // len(rows))
    anchors = [f"{text} #{r}" for r in range(repeats) for text in rows["anchor"]][: args.batch_size]
    positives = [f"{text} #{r}" for r in range(repeats) for text in rows["positive"]][: args.batch_size]
    label_ids = torch.arange(args.batch_size).unsqueeze(1)
    features = [model.preprocess(anchors), model.preprocess(positives)]

    arms = {
        "MultipleNegativesRankingLoss": MultipleNegativesRankingLoss(model),
        "TCMLoss(ALCLoss(softmax))": TCMLoss(model, base_loss=ALCLoss(model)),
    }
    optimizers = {name: torch.optim.AdamW(loss.parameters(), lr=1e-6) for name, loss in arms.items()}
    times: dict[str, list[float]] = {name: [] for name in arms}
    for step in range(args.warmup + args.steps):
        for name, loss in arms.items():
            seconds = training_step(loss, optimizers[name], features, label_ids)
            if step >= args.warmup:
                times[name].append(seconds)
        print(f"step {step + 1}/{args.warmup + args.steps}", flush=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians["MultipleNegativesRankingLoss"]
    print(f"\nbatch {args.batch_size}, {args.steps} timed steps per arm (after {args.warmup} warm-up), interleaved")
    for name, median in medians.items():
        print(f"{name:32s} median {median:.3f} s/step   ratio {median / baseline:.3f}")


if __name__ == "__main__":
    main()
