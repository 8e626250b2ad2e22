"""One rank of the two-rank test (run under torchrun by test_learner_multirank.py).

Rank 1's rewards are constant, so with ``drop_zero_variance_groups`` it has nothing to train
on and must pad its batch with zero-weight rows to run as many micro-batches as rank 0:
otherwise ZeRO-3 deadlocks. Writes ``rank<r>.json`` with metrics and a parameter digest.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from learner.trainer import GRPOTrainer
from tests.learner_support import TextRewardScorer, digit_fraction, small_config


def main(out_dir: str, zero_stage: str) -> None:
    rank = int(os.environ["RANK"])
    reward = digit_fraction if rank == 0 else (lambda text: 0.5)
    config = small_config(str(Path(out_dir) / "run"), zero_stage=int(zero_stage), states_per_step=4,
                          drop_zero_variance_groups=True, micro_batch_size=3, steps=2, lr=1e-2)
    trainer = GRPOTrainer(config, scorer=TextRewardScorer(reward), echo=lambda _: None)
    before = [t.detach().clone().float() for _, t in trainer.engine.named_checkpoint_tensors()]
    metrics = [trainer.train_step() for _ in range(config.steps)]
    after = [t.detach().clone().float() for _, t in trainer.engine.named_checkpoint_tensors()]
    result = {
        "metrics": metrics,
        "changed": sum(not torch.equal(a, b) for a, b in zip(before, after, strict=True)),
        "parameters": len(after),
        "digest": [float(t.double().sum()) for t in after],
    }
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
