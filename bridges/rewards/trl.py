"""TRL ``GRPOTrainer`` reward functions, one per component, so TRL logs each of them.

    from bridges.rewards.trl import REWARD_FUNCS, reward_weights
    GRPOTrainer(model, reward_funcs=REWARD_FUNCS, train_dataset=ds,
                args=GRPOConfig(reward_weights=reward_weights(ds[0]["answer"]), ...))

TRL calls each as ``f(prompts=..., completions=..., completion_ids=..., **columns)``, the
dataset's other columns as lists (``answer`` among them: the ground truth) plus
``trainer_state``, ``log_extra`` and ``log_metric``. TRL sums the components with
``reward_weights``: the game protocol's ``[w_game, w_format, w_perception]`` reproduce
``GroupScores.overall``. The functions return the unweighted components.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridges.rewards.core import CachedScorer, weights

_scores = CachedScorer()


def _component(name: str, completions: Sequence[Any], answer: Sequence[str] | None) -> list[float]:
    if answer is None:
        raise ValueError("the dataset has no 'answer' column; build it with bridges.export.to_dataset")
    return _scores(answer, completions)[name].tolist()


def game_reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None,
                **columns: Any) -> list[float]:
    """The shaped game reward of each completion's move (the ``game`` component)."""
    return _component("game", completions, answer)


def format_reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None,
                  **columns: Any) -> list[float]:
    """1 where the completion has the ``<perception>``, ``<think>`` and ``<answer>`` pairs."""
    return _component("format", completions, answer)


def perception_reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None,
                      **columns: Any) -> list[float]:
    """1 where the completion's perception block equals the board's text."""
    return _component("perception", completions, answer)


REWARD_FUNCS = [game_reward, format_reward, perception_reward]
"""TRL's ``reward_funcs``, in the order of :func:`reward_weights`."""


def reward_weights(ground_truth: str, **overrides: Any) -> list[float]:
    """TRL's ``GRPOConfig.reward_weights`` for a dataset's game: ``[w_game, w_format, w_perception]``."""
    return weights(ground_truth, **overrides)
