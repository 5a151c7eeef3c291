"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`; also importable for the 1-process side.

Each process takes its half of one fixed batch, computes TCMLoss(ALCLoss) with gathering (also inside CachedLoss,
three texts an encoder pass), backpropagates, and averages the encoder gradients the way DDP does (the pair head
averages its own). Rank 0 saves the loss parts (averaged over processes) and the gradients for the test to compare
with one process fed the whole batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from alc_hf import ALCLoss, CachedLoss, TCMLoss
from tests.tiny_model import load_tiny_encoder

# Row 1 and row 5 (on the other process) share label 11; query "sony wh1000" (rows 0 and 4) has positives 10 and 14,
# so each of its rows must mask the other's positive although they sit on different processes.
QUERIES = [
    "sony wh1000",
    "apple iphone 15",
    "usb c cable",
    "dell xps 13",
    "sony wh1000",
    "pixel 8 pro",
    "lg oled 55",
    "asus zenbook",
]
LABELS = [
    "Sony WH-1000XM5",
    "Apple iPhone 15",
    "USB-C Cable 2m",
    "Dell XPS 13",
    "Sony WH-1000XM5 Silver",
    "Apple iPhone 15",
    "LG OLED55C3",
    "ASUS Zenbook 14",
]
NEGATIVES = [
    "Sony WH-1000XM4",
    "Apple iPhone 14",
    "USB-A Cable",
    "Dell XPS 15",
    "Sony WF-1000XM5",
    "Pixel 7 Pro",
    "LG OLED65C3",
    "ASUS Vivobook 14",
]
LABEL_IDS = [
    [10, 20, 14],
    [11, 21, -1],
    [12, 22, -1],
    [13, 23, -1],
    [14, 24, 10],
    [11, 25, -1],
    [16, 26, -1],
    [17, 27, -1],
]


def run(model_dir: Path, rows: slice, gather: bool, with_label_ids: bool, cached: bool = False) -> tuple[dict, dict]:
    model = load_tiny_encoder(model_dir)
    torch.manual_seed(0)
    loss = TCMLoss(model, base_loss=ALCLoss(model, num_negatives=4), gather_across_devices=gather)
    columns = [model.preprocess(column[rows]) for column in (QUERIES, LABELS, NEGATIVES)]
    labels = torch.tensor(LABEL_IDS[rows]) if with_label_ids else None
    parts = (CachedLoss(loss, mini_batch_size=3) if cached else loss)(columns, labels)
    sum(parts.values()).backward()
    gradients = {name: p.grad.clone() for name, p in loss.named_parameters() if p.grad is not None}
    return {key: value.detach() for key, value in parts.items()}, gradients


def main(model_dir: Path, output: Path) -> None:
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    per_process = len(QUERIES) // world_size
    rows = slice(rank * per_process, (rank + 1) * per_process)
    results = {}
    for mode, with_label_ids, cached in (("ids", True, False), ("texts", False, False), ("ids cached", True, True)):
        parts, gradients = run(model_dir, rows, gather=True, with_label_ids=with_label_ids, cached=cached)
        for name, gradient in gradients.items():
            if not name.startswith("loss.pair_head"):  # DDP averages the encoder; the pair head averages itself
                dist.all_reduce(gradient)
                gradient /= world_size
        for value in parts.values():
            dist.all_reduce(value)
            value /= world_size
        results[mode] = (parts, gradients)
    # The pair head's gradients must already be identical on both processes.
    for mode in ("ids", "ids cached"):
        head = results[mode][1]["loss.pair_head.layers.0.weight"]
        other = [torch.empty_like(head) for _ in range(world_size)]
        dist.all_gather(other, head)
        results[f"pair_head_identical_across_processes ({mode})"] = all(torch.equal(other[0], x) for x in other)
    if rank == 0:
        torch.save(results, output)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
