"""Train a VLM to play a jaxgym game with GRPO.

    python learner/train.py --game shisensho                    # CPU smoke run, tiny built-in model
    python learner/train.py --game 2048 --steps 20 lr=1e-3      # overrides: --key value or key=value
    python learner/train.py --config run.yaml --seed 3          # YAML file, then overrides
    deepspeed --num_gpus 4 learner/train.py --preset g1 --game shisensho \\
        --model Qwen/Qwen2.5-VL-7B-Instruct                     # the paper's recipe on 4x80 GB
    python learner/train.py --resume runs/shisensho-20250101-120000 --steps 40

Every key of ``learner.config.TrainConfig`` can be set; ``--help`` lists them.
"""

from __future__ import annotations

import sys


def _help() -> str:
    """``--help``: this docstring, the presets, then every key with its type, default and help."""
    from bridges.cli import help_text
    from learner.config import PRESETS, TrainConfig

    return help_text(TrainConfig, __doc__, sections=[f"Presets: {', '.join(PRESETS)} (--preset NAME)"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(_help())
        return 0
    from learner.config import parse_args

    try:
        config = parse_args(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from learner.trainer import GRPOTrainer

    try:
        trainer = GRPOTrainer(config)
    except (ValueError, ImportError) as error:  # bad input found while building the run (model, game, sizes)
        print(f"error: {error}", file=sys.stderr)
        return 2
    trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
