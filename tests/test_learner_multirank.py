"""Two data-parallel ranks on CPU (gloo) under torchrun, ZeRO-3, unequal batches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_two_ranks_zero3_with_a_rank_that_drops_every_group(tmp_path):
    job = Path(__file__).with_name("learner_multirank_job.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               str(job), str(tmp_path), "3"]
    # A rank running fewer micro-batches than the other would hang in ZeRO-3's collectives.
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # The ranks hold identical (gathered) weights, and every parameter was trained.
    assert rank0["digest"] == rank1["digest"]
    assert rank0["changed"] == rank0["parameters"] > 0
    for m0, m1 in zip(rank0["metrics"], rank1["metrics"], strict=True):
        assert m0["optimizer_steps"] == m1["optimizer_steps"] == 1
        assert 0 < m0["sequences_trained"] == m1["sequences_trained"] <= 8  # rank 0's 2 x 4 at most; rank 1 pads
        # Rank 1's groups all have equal rewards: half of all groups, and no trained sequence there.
        assert m0["zero_variance_group_fraction"] == m1["zero_variance_group_fraction"]
        assert 0.5 <= m0["zero_variance_group_fraction"] < 1.0
        assert m0["grad_norm"] == m1["grad_norm"] > 0
    assert (tmp_path / "run").is_dir() and not any(tmp_path.glob("run-*"))


@pytest.mark.slow
def test_a_two_rank_cold_start_trains_and_logs_the_global_token_mean(tmp_path):
    """The ranks' gradients are averaged, so each rank's loss is its share of the global token
    mean times the rank count: the untrained model's first loss (about log(vocabulary), every
    token near uniform) and its gradient norm then match a single rank's on the same sizes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env = {k: v for k, v in env.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    args = ["--game", "2048", "--game_params", '{"image_size":56}', "--steps", "1", "--states_per_step", "4",
            "--eval_every", "0", "--save_every", "0", "--export", "false", "--progress", "false",
            "--tensorboard", "false"]
    sft = str(Path(__file__).resolve().parent.parent / "learner" / "sft.py")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = {}
    for ranks in (1, 2):
        run_dir = tmp_path / f"ranks{ranks}"
        launcher = (["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
                    if ranks == 2 else [])
        done = subprocess.run([sys.executable, *launcher, sft, *args, "--run_dir", str(run_dir)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        runs[ranks] = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    one, two = runs[1], runs[2]
    assert two["sequences_trained"] == one["sequences_trained"] == 4
    assert two["loss/sft"] == pytest.approx(one["loss/sft"], rel=0.1) and one["loss/sft"] > 5.0
    assert 0.0 <= two["token_accuracy"] <= 1.0
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=0.25)
