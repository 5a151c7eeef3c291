"""Two CPU processes with gathering give the loss and gradients of one process fed the whole batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.distributed_loss_check import QUERIES, run

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def two_process_results(tiny_encoder_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("ddp") / "results.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(REPO_ROOT / "tests" / "distributed_loss_check.py"),
        str(tiny_encoder_dir),
        str(output),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return torch.load(output)


@pytest.mark.parametrize("mode", ["ids", "texts", "ids cached"])
def test_two_processes_match_one_process_on_the_whole_batch(tiny_encoder_dir, two_process_results, mode):
    parts, gradients = two_process_results[mode]
    expected_parts, expected_gradients = run(
        tiny_encoder_dir, slice(0, len(QUERIES)), gather=False, with_label_ids=mode != "texts"
    )
    assert set(parts) == {"base", "ql", "qb", "tcm"}
    for key in expected_parts:
        torch.testing.assert_close(parts[key], expected_parts[key], rtol=1e-5, atol=1e-6, msg=f"part {key}")
    assert set(gradients) == set(expected_gradients)
    for name in expected_gradients:
        torch.testing.assert_close(gradients[name], expected_gradients[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("mode", ["ids", "ids cached"])
def test_pair_head_gradients_are_averaged_across_processes(two_process_results, mode):
    assert two_process_results[f"pair_head_identical_across_processes ({mode})"]


def test_without_gathering_the_halves_differ_from_the_whole(tiny_encoder_dir, two_process_results):
    # Guards the comparison above: the whole batch is not what one half sees on its own.
    whole, _ = run(tiny_encoder_dir, slice(0, len(QUERIES)), gather=False, with_label_ids=True)
    half, _ = run(tiny_encoder_dir, slice(0, len(QUERIES) // 2), gather=False, with_label_ids=True)
    assert not torch.allclose(whole["base"], half["base"])
