"""Helpers shared by the learner tests: small configs and a text-based reward (the shared
fixtures are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bridges.scoring import GroupScores
from learner.config import TrainConfig, from_dict


def digit_fraction(text: str) -> float:
    """The share of a response's characters that are decimal digits (0 for an empty one)."""
    return sum(c.isdigit() for c in text) / len(text) if text else 0.0


class TextRewardScorer:
    """A ``GroupScorer`` stand-in whose overall reward is ``reward(text)`` of each response."""

    def __init__(self, reward: Callable[[str], float] = digit_fraction):
        self.reward = reward

    def score(self, states: Any, responses: Sequence[Sequence[str]], key: Any) -> GroupScores:
        overall = np.array([[self.reward(r) for r in group] for group in responses], np.float32)
        zeros = np.zeros_like(overall)
        return GroupScores(
            actions=np.full(overall.shape, -1, np.int32), parsed=zeros.astype(bool), raw_reward=zeros,
            game=zeros, format=zeros, perception=zeros, overall=overall,
        )


def small_config(run_dir: str, **overrides: Any) -> TrainConfig:
    """A fast config: 2048 on 56x56 boards, 2 states x 4 responses of at most 6 tokens."""
    values = dict(
        game="2048", game_params={"image_size": 56}, run_dir=run_dir, steps=1, states_per_step=2, group_size=4,
        max_response_tokens=6, micro_batch_size=4, logprob_micro_batch_size=8, lr=1e-2, kl_coef=0.01,
        dump_every=0, export=False, progress=False, tensorboard=False,
    )
    values.update(overrides)
    return from_dict(values).validate()
