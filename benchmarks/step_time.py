"""Training step time and peak memory of a configuration against MultipleNegativesRankingLoss, at the same batch.

    .venv/bin/python benchmarks/step_time.py --batch_size 32 --steps 20             # TCMLoss(ALCLoss), catalog pairs
    .venv/bin/python benchmarks/step_time.py --rows wdc --arm alc_tcm --batching clustered --steps 20
    .venv/bin/python benchmarks/step_time.py --rows wdc --batch_size 1024 --mini_batch_size 32 --steps 0 \
        --memory_steps 1 --memory_limit_gb 16                                        # CachedLoss at batch 1024

Each step (forward, backward, AdamW step) alternates between the two losses on the same batch so that machine noise
hits both alike; the figure to read is the ratio of the medians. With ``--rows wdc`` the batches are real WDC
training rows (one labelled hard negative each), and the batch sampler's cost per epoch is added to each arm's step,
spread over the epoch's steps: planning the epoch for both, and for ``--batching clustered`` also the refresh (the
callback embeds every distinct query once per epoch) and the clustering. Peak memory is each loss's own: a fresh
child process per loss runs the same steps alone and reads its peak RSS (VmHWM). Uses the offline all-MiniLM-L6-v2.

``--mini_batch_size N`` adds the arm inside :class:`~alc_hf.CachedLoss` (N texts an encoder pass). ``--steps 0``
skips the timing (at batch sizes where one arm alone fills the memory) and measures only each arm's peak.
``--memory_limit_gb`` caps each memory child's address space, so an arm that needs more fails to allocate and is
reported as not fitting, instead of pushing the machine into swap or the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from table_quality import DATASETS, build_arm_loss

from alc_hf.data import (
    builtin_catalog,
    read_product_tables,
    training_rows,
)
from alc_hf.models import load_encoder
from alc_hf.training import ClusteredBatchSampler, UniqueQueryLabelBatchSampler

BASELINE = "MultipleNegativesRankingLoss"


def training_step(loss: torch.nn.Module, optimizer: torch.optim.Optimizer, features: list, labels) -> float:
    start = time.perf_counter()
    optimizer.zero_grad()
    result = loss(features, labels)
    total = sum(result.values()) if isinstance(result, dict) else result
    total.backward()
    optimizer.step()
    return time.perf_counter() - start


def build_arms(model, arm: str, mini_batch_size: int | None) -> dict[str, torch.nn.Module]:
    arms = {BASELINE: MultipleNegativesRankingLoss(model), arm: build_arm_loss(model, arm, {})}
    if mini_batch_size is not None:
        arms[cached_arm(arm, mini_batch_size)] = build_arm_loss(model, arm, {"mini_batch_size": mini_batch_size})
    return arms


def cached_arm(arm: str, mini_batch_size: int) -> str:
    return f"{arm} in CachedLoss({mini_batch_size})"


def catalog_batches(model, batch_size: int, count: int) -> list[tuple[list, torch.Tensor]]:
    """The first ``batch_size`` rows of the built-in catalog (offer, catalog title): the same batch every step."""
    rows = training_rows(builtin_catalog(split="val")).select(range(batch_size))
    features = [model.preprocess(rows["anchor"]), model.preprocess(rows["positive"])]
    return [(features, torch.tensor(rows["label"]))] * count


def wdc_rows():
    dataset = DATASETS["wdc"]
    data = read_product_tables(dataset.data_dir, split="train", text_fields=dataset.text_fields)
    return training_rows(data, num_hard_negatives=1, seed=0), dataset


def wdc_batches(model, batch_size: int, count: int) -> list[tuple[list, torch.Tensor]]:
    """The first ``count`` batches of the WDC training rows' epoch plan (the random sampler's)."""
    rows, dataset = wdc_rows()
    model.max_seq_length = dataset.max_seq_length
    plan = UniqueQueryLabelBatchSampler(rows, batch_size=batch_size, drop_last=True, seed=0).plan(0)[:count]
    batches = []
    for batch in plan:
        selected = rows.select(batch)
        columns = [selected[name] for name in ("anchor", "positive", "negative_1")]
        batches.append(([model.preprocess(column) for column in columns], torch.tensor(selected["label"])))
    return batches


def sampler_seconds_per_step(model, batch_size: int, batching: str) -> dict[str, float]:
    """Per training step, the sampler's work of one WDC epoch: planning, and for clustered batches the refresh
    (embedding every distinct query, as ClusterRefreshCallback does) and the clustering."""
    rows, _ = wdc_rows()
    random_sampler = UniqueQueryLabelBatchSampler(rows, batch_size=batch_size, drop_last=False, seed=0)
    started = time.perf_counter()
    steps = len(random_sampler.plan(1))
    costs = {BASELINE: (time.perf_counter() - started) / steps}
    if batching == "clustered":
        sampler = ClusteredBatchSampler(rows, batch_size=batch_size, drop_last=False, seed=0)
        started = time.perf_counter()
        embeddings = model.encode_query(sampler.embedding_texts(), batch_size=128, normalize_embeddings=True)
        embedded = time.perf_counter()
        sampler.set_embeddings(embeddings)
        sampler.plan(1)
        costs["arm"] = (time.perf_counter() - started) / steps
        costs["embedding share"] = (embedded - started) / steps
    else:
        costs["arm"] = costs[BASELINE]
    costs["steps per epoch"] = steps
    return costs


def rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def measure_memory(arm: str, args: argparse.Namespace) -> None:
    """Child process: the model, one loss, ``warmup + steps`` steps; prints RSS before them, the peak, and the step
    seconds (or that the steps did not fit in ``memory_limit_gb``)."""
    torch.manual_seed(0)
    model = load_encoder(device="cpu")
    loss = build_arms(model, args.arm, args.mini_batch_size)[arm]
    batches = BATCHES[args.rows](model, args.batch_size, args.warmup + args.steps)
    optimizer = torch.optim.AdamW(loss.parameters(), lr=1e-6)
    before = rss_mb("VmRSS")
    if args.memory_limit_gb:
        limit = int(args.memory_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        seconds = [training_step(loss, optimizer, features, labels) for features, labels in batches]
    except (MemoryError, RuntimeError) as error:
        out_of_memory = isinstance(error, MemoryError) or "alloc" in str(error).lower()
        if args.memory_limit_gb is None or not out_of_memory:
            raise
        print(json.dumps({"before_mb": before, "peak_mb": rss_mb("VmHWM"), "fits": False, "error": str(error)[:200]}))
        return
    print(json.dumps({"before_mb": before, "peak_mb": rss_mb("VmHWM"), "fits": True, "seconds": seconds}))


BATCHES = {"catalog": catalog_batches, "wdc": wdc_batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", default="alc_tcm", help="the configuration against MNRL (a table_quality arm)")
    parser.add_argument("--rows", choices=BATCHES, default="catalog")
    parser.add_argument("--batching", choices=("random", "clustered"), default="random", help="with --rows wdc")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory_steps", type=int, default=5, help="training steps of each memory child")
    parser.add_argument("--mini_batch_size", type=int, help="also the arm inside CachedLoss, this many texts a pass")
    parser.add_argument("--memory_limit_gb", type=float, help="address space of each memory child")
    parser.add_argument("--memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        measure_memory(args.memory_child, argparse.Namespace(**{**vars(args), "steps": args.memory_steps}))
        return

    torch.manual_seed(0)
    model = load_encoder(device="cpu")
    batches = BATCHES[args.rows](model, args.batch_size, args.warmup + args.steps) if args.steps else []
    arms = build_arms(model, args.arm, args.mini_batch_size)
    optimizers = {name: torch.optim.AdamW(loss.parameters(), lr=1e-6) for name, loss in arms.items()}
    times: dict[str, list[float]] = {name: [] for name in arms}
    for step, (features, labels) in enumerate(batches):
        for name, loss in arms.items():
            seconds = training_step(loss, optimizers[name], features, labels)
            if step >= args.warmup:
                times[name].append(seconds)
        print(f"step {step + 1}/{len(batches)}", flush=True)
    sampler = dict.fromkeys(arms, 0.0)
    if args.rows == "wdc" and args.steps:
        costs = sampler_seconds_per_step(model, args.batch_size, args.batching)
        sampler = {name: costs[BASELINE if name == BASELINE else "arm"] for name in arms}
        print(f"sampler per step over a WDC epoch of {costs['steps per epoch']} steps: {costs}")

    memory = {}
    for name in arms:
        command = [sys.executable, __file__, "--arm", args.arm, "--rows", args.rows, "--batch_size"]
        command += [str(args.batch_size), "--warmup", str(args.warmup), "--memory_steps", str(args.memory_steps)]
        for option in ("mini_batch_size", "memory_limit_gb"):
            if getattr(args, option) is not None:
                command += [f"--{option}", str(getattr(args, option))]
        child = subprocess.run([*command, "--memory_child", name], capture_output=True, text=True, check=True)
        memory[name] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{name}: {memory[name]}", flush=True)

    print(
        f"\n{args.rows} rows, batch {args.batch_size}, {args.steps} timed steps per arm (after {args.warmup} warm-up), "
        f"interleaved; {args.arm} batches: {args.batching if args.rows == 'wdc' else 'fixed'}"
    )
    print("peak RSS: own child process, model + optimizer + training steps; 'training' = peak minus RSS before them")
    totals = {name: statistics.median(values) + sampler[name] for name, values in times.items() if values}
    for name in arms:
        peak, before = memory[name]["peak_mb"], memory[name]["before_mb"]
        fits = (
            f"peak RSS {peak:,.0f} MB (training {peak - before:,.0f} MB)"
            if memory[name]["fits"]
            else f"does not fit in {args.memory_limit_gb:g} GB of address space"
        )
        if name in totals:
            timing = (
                f"median {statistics.median(times[name]):.3f} s/step + sampler {sampler[name]:.4f} s = "
                f"{totals[name]:.3f}  ratio {totals[name] / totals[BASELINE]:.3f}  "
            )
        elif memory[name]["fits"]:
            timing = f"alone {statistics.median(memory[name]['seconds']):.1f} s/step  "
        else:
            timing = ""
        print(f"{name:36s} {timing}{fits}")


if __name__ == "__main__":
    main()
