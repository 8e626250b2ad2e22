"""``learner/train.py`` with a text reward instead of the game's (run by test_vllm_trainer.py).

The tiny random model never writes a legal move, so the game's rewards are all equal and
GRPO's advantages are 0: no update, nothing for vLLM to sync. Rewarding the share of digits
in a response gives every group a spread, so every step changes the weights and the
rollout-vs-trainer log-prob gap shows whether vLLM received them.

    PYTHONPATH=. python tests/rollout_vllm/text_reward_train_job.py --rollout_engine vllm ...   # train.py's arguments
"""

from __future__ import annotations

import sys

from learner.config import parse_args
from learner.trainer import GRPOTrainer
from tests.learner_support import TextRewardScorer

if __name__ == "__main__":
    GRPOTrainer(parse_args(sys.argv[1:]), scorer=TextRewardScorer()).train()
