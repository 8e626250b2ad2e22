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
