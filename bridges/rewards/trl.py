"""TRL ``GRPOTrainer`` reward functions, one per component, so TRL logs each of them.

    from bridges.rewards.trl import REWARD_FUNCS, reward_weights
    GRPOTrainer(model, reward_funcs=REWARD_FUNCS, train_dataset=ds,
                args=GRPOConfig(reward_weights=reward_weights(ds[0]["answer"]), ...))

TRL calls each as ``f(prompts=..., completions=..., completion_ids=..., **columns)``, the
dataset's other columns as lists (``answer`` among them: the ground truth) plus
``trainer_state``, ``log_extra`` and ``log_metric``, and logs ``rewards/<name>/mean``. It sums
the components with ``reward_weights``: the game protocol's ``[w_game, w_format,
w_perception]`` reproduce ``GroupScores.overall``. The functions return the unweighted
components. :func:`make_reward_funcs` builds them with ``GameProtocol`` overrides (e.g.
``shaping="legal"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bridges.rewards.core import COMPONENTS, CachedScorer, weights

RewardFunc = Callable[..., list[float]]


def make_reward_funcs(**overrides: Any) -> list[RewardFunc]:
    """``[game_reward, format_reward, perception_reward]`` scoring with ``GroupScorer(env,
    **overrides)``; the three share one scored batch per call of TRL's."""
    scores = CachedScorer()

    def component(name: str) -> RewardFunc:
        def reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None,
                   **columns: Any) -> list[float]:
            if answer is None:
                raise ValueError("the dataset has no 'answer' column; build it with bridges.export.to_dataset")
            return scores(answer, completions, **overrides)[name].tolist()

        reward.__name__ = reward.__qualname__ = f"{name}_reward"
        reward.__doc__ = f"The {name!r} reward component of each completion (TRL reward function)."
        return reward

    return [component(name) for name in COMPONENTS]


REWARD_FUNCS = make_reward_funcs()
"""TRL's ``reward_funcs`` with the game's protocol, in the order of :func:`reward_weights`."""


def reward_weights(ground_truth: str, **overrides: Any) -> list[float]:
    """TRL's ``GRPOConfig.reward_weights`` for a dataset's game: ``[w_game, w_format, w_perception]``."""
    return weights(ground_truth, **overrides)
