"""Training step time and peak memory of ALC + TCM against MultipleNegativesRankingLoss, at the same batch.

    .venv/bin/python benchmarks/step_time.py --batch_size 32 --steps 20

Each step (forward, backward, AdamW step) alternates between the two losses so that machine noise hits both alike;
the figure to read is the ratio of the medians. Peak memory is each loss's own: a fresh child process per loss runs
the same steps alone and reads its peak RSS (VmHWM), so neither sees the other's allocations. Uses the offline
all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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


def build_arms(model) -> dict[str, torch.nn.Module]:
    return {
        "MultipleNegativesRankingLoss": MultipleNegativesRankingLoss(model),
        "TCMLoss(ALCLoss(softmax))": TCMLoss(model, base_loss=ALCLoss(model)),
    }


def batch(model, batch_size: int) -> tuple[list, torch.Tensor]:
    rows = product_pairs()
    repeats = -(-batch_size // len(rows))
    anchors = [f"{text} #{r}" for r in range(repeats) for text in rows["anchor"]][:batch_size]
    positives = [f"{text} #{r}" for r in range(repeats) for text in rows["positive"]][:batch_size]
    return [model.preprocess(anchors), model.preprocess(positives)], torch.arange(batch_size).unsqueeze(1)


def rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def measure_memory(arm: str, args: argparse.Namespace) -> None:
    """Child process: the model, one loss, ``warmup + steps`` steps; prints RSS before them, and the peak."""
    torch.manual_seed(0)
    model = load_encoder(device="cpu")
    loss = build_arms(model)[arm]
    features, label_ids = batch(model, args.batch_size)
    optimizer = torch.optim.AdamW(loss.parameters(), lr=1e-6)
    before = rss_mb("VmRSS")
    for _ in range(args.warmup + args.steps):
        training_step(loss, optimizer, features, label_ids)
    print(json.dumps({"before_mb": before, "peak_mb": rss_mb("VmHWM")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory_steps", type=int, default=5, help="training steps of each memory child")
    parser.add_argument("--memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        measure_memory(args.memory_child, argparse.Namespace(**{**vars(args), "steps": args.memory_steps}))
        return

    torch.manual_seed(0)
    model = load_encoder(device="cpu")
    features, label_ids = batch(model, args.batch_size)
    arms = build_arms(model)
    optimizers = {name: torch.optim.AdamW(loss.parameters(), lr=1e-6) for name, loss in arms.items()}
    times: dict[str, list[float]] = {name: [] for name in arms}
    for step in range(args.warmup + args.steps):
        for name, loss in arms.items():
            seconds = training_step(loss, optimizers[name], features, label_ids)
            if step >= args.warmup:
                times[name].append(seconds)
        print(f"step {step + 1}/{args.warmup + args.steps}", flush=True)

    memory = {}
    for name in arms:
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--batch_size",
                str(args.batch_size),
                "--warmup",
                str(args.warmup),
                "--memory_steps",
                str(args.memory_steps),
                "--memory_child",
                name,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        memory[name] = json.loads(child.stdout.strip().splitlines()[-1])

    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians["MultipleNegativesRankingLoss"]
    print(f"\nbatch {args.batch_size}, {args.steps} timed steps per arm (after {args.warmup} warm-up), interleaved")
    print("peak RSS: own child process, model + optimizer + training steps; 'training' = peak minus RSS before them")
    for name, median in medians.items():
        peak, before = memory[name]["peak_mb"], memory[name]["before_mb"]
        print(
            f"{name:30s} median {median:.3f} s/step  ratio {median / baseline:.3f}  "
            f"peak RSS {peak:,.0f} MB (training {peak - before:,.0f} MB)"
        )


if __name__ == "__main__":
    main()
