"""One training process of the kill -9 test: ``python -m tests.reliability_train_job RUN_DIR
[--resume] [--kill WHERE:STEP]``. WHERE is ``deepspeed`` (SIGKILL right after DeepSpeed wrote
the step's files into the partial checkpoint) or ``rename`` (after its manifest, before the
rename that completes it); the process dies there as from a kill -9."""

from __future__ import annotations

import os
import signal
import sys

from learner import checkpoint as ckpt
from learner.trainer import GRPOTrainer
from tests.learner_support import TextRewardScorer, small_config

CONFIG = dict(steps=4, save_every=1, keep_checkpoints=2, sample_depth=3, kl_coef=0.01, lr=1e-2)


def main(argv: list[str]) -> None:
    run_dir, rest = argv[0], argv[1:]
    kill_where, kill_step = None, -1
    if "--kill" in rest:
        kill_where, step = rest[rest.index("--kill") + 1].split(":")
        kill_step = int(step)
    trainer = GRPOTrainer(small_config(run_dir, resume=run_dir if "--resume" in rest else "", **CONFIG),
                          scorer=TextRewardScorer(), echo=lambda line: print(line, flush=True))

    def die() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if kill_where == "deepspeed":
        save = trainer.engine.save

        def save_then_die(directory, client_state):
            save(directory, client_state)
            if client_state["step"] == kill_step:
                die()

        trainer.engine.save = save_then_die
    elif kill_where == "rename":
        replace = os.replace
        partial = ckpt.partial_dir(trainer.run_dir / ckpt.CHECKPOINTS, f"step_{kill_step:06d}")

        def replace_or_die(src, dst):
            if os.fspath(src) == os.fspath(partial):  # its manifest is written: the rename would complete it
                die()
            replace(src, dst)

        os.replace = replace_or_die
    trainer.train()


if __name__ == "__main__":
    main(sys.argv[1:])
