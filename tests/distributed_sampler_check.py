"""Run by tests/test_clustered_sampler.py under `torchrun --nproc_per_node 2` (gloo, CPU).

Each process gives the sampler different embeddings (as different devices would, here entirely different), reads
its share of the batches through accelerate's BatchSamplerShard, refreshes with other embeddings after a different
number of batches on each process, and reads on. Rank 0 writes whether the plans agreed and every row was served
exactly once, whether a ClusterRefreshCallback refresh with the tiny encoder (encoding shared by the processes)
left identical plans, and which errors bad embeddings on the main process raised on each process.
"""

from __future__ import annotations

import json
import sys
from itertools import islice

import numpy as np
import torch.distributed as dist
from accelerate.data_loader import BatchSamplerShard

from alc_hf.training.clustered_batches import ClusteredBatchSampler, ClusterRefreshCallback
from tests.test_clustered_sampler import family_rows
from tests.tiny_model import load_tiny_encoder


def main(encoder_dir: str, output: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    dataset, _ = family_rows(num_families=40)
    sampler = ClusteredBatchSampler(dataset, batch_size=8, drop_last=False, seed=1)
    promised = len(sampler)
    rng = np.random.default_rng(rank)
    sampler.set_embeddings(rng.standard_normal((sampler.num_items, 8)))
    plans: list = [None] * world
    dist.all_gather_object(plans, sampler.plan())
    same_plan = all(plan == plans[0] for plan in plans)

    shard = iter(BatchSamplerShard(sampler, num_processes=world, process_index=rank, even_batches=False))
    served = list(islice(shard, 2 + rank))  # the processes stop at different places in the plan
    sampler.set_embeddings(rng.standard_normal((sampler.num_items, 8)))
    served += list(shard)
    dist.all_gather_object(plans, sampler.plan())
    same_plan_after_refresh = all(plan == plans[0] for plan in plans)
    everything: list = [None] * world
    dist.all_gather_object(everything, served)
    rows = sorted(row for part in everything for batch in part for row in batch)

    ClusterRefreshCallback(sampler=sampler, batch_size=8).refresh(load_tiny_encoder(encoder_dir))
    dist.all_gather_object(plans, sampler.plan())
    same_plan_after_callback = all(plan == plans[0] for plan in plans)

    errors = []
    broken = np.ones((sampler.num_items, 8)) if rank else np.full((sampler.num_items, 8), np.nan)
    try:
        sampler.set_embeddings(broken)
    except (ValueError, RuntimeError) as error:
        errors.append(type(error).__name__)
    all_errors: list = [None] * world
    dist.all_gather_object(all_errors, errors)
    if rank == 0:
        result = {
            "same_plan": same_plan,
            "same_plan_after_refresh": same_plan_after_refresh,
            "same_plan_after_callback": same_plan_after_callback,
            "rows_served_once": rows == list(range(len(dataset))),
            "batches": sum(len(part) for part in everything),
            "promised": promised,
            "errors": [name for part in all_errors for name in part],
        }
        with open(output, "w") as handle:
            json.dump(result, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
