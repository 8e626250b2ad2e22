"""verl reward function: ``custom_reward_function.path=/path/to/bridges/rewards/verl.py
custom_reward_function.name=compute_score``.

verl's reward managers call ``compute_score(data_source=..., solution_str=...,
ground_truth=..., extra_info=...)`` once per response, ``ground_truth`` from the dataset's
``reward_model.ground_truth`` and keyword arguments from ``custom_reward_function.reward_kwargs``
(``GameProtocol`` overrides). A dict result's ``score`` is the reward; every key is logged.
"""

from __future__ import annotations

from typing import Any

from bridges.rewards.core import COMPONENTS, score_responses


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None,
                  **overrides: Any) -> dict[str, float]:
    """``{"score": overall, "game", "format", "perception"}`` of one response."""
    if not str(data_source).startswith("jaxgym/"):
        raise ValueError(f"data_source={data_source!r} is not a jaxgym export ('jaxgym/<game id>'); route only "
                         f"jaxgym rows to this reward function")
    scores = score_responses([ground_truth], [solution_str], **overrides)
    return {"score": float(scores["overall"][0]), **{name: float(scores[name][0]) for name in COMPONENTS}}
