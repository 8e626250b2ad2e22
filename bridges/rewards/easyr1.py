"""EasyR1 batch reward function: ``worker.reward.reward_function=/path/to/bridges/rewards/easyr1.py:compute_score``.

EasyR1 reads the module's ``REWARD_TYPE`` (``"batch"``: one call per batch) and ``REWARD_NAME``.

EasyR1's ``BatchFunctionRewardManager`` calls ``compute_score(reward_inputs)`` with one
``{"response", "response_length", "ground_truth"}`` dict per response (``ground_truth`` is the
dataset's ``answer`` column) and keyword arguments from ``reward_function_kwargs``: here
``GameProtocol`` overrides such as ``w_perception``. It puts ``overall`` on the last
response token and logs every key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridges.rewards.core import COMPONENTS, score_responses

REWARD_NAME = "jaxgym"
REWARD_TYPE = "batch"


def compute_score(reward_inputs: Sequence[dict[str, Any]], **overrides: Any) -> list[dict[str, float]]:
    """``[{"overall", "game", "format", "perception"}]``, one per input."""
    if isinstance(reward_inputs, dict):
        raise ValueError("compute_score takes a list of reward inputs (a batch, REWARD_TYPE='batch'), got one dict; "
                         "wrap it in a list")
    for i, r in enumerate(reward_inputs):
        missing = [k for k in ("response", "ground_truth") if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"reward input {i} lacks {missing}; EasyR1 passes {{'response', 'response_length', "
                             f"'ground_truth'}} per response (data.answer_key=answer)")
    scores = score_responses([r["ground_truth"] for r in reward_inputs], [r["response"] for r in reward_inputs],
                             **overrides)
    names = ("overall", *COMPONENTS)
    return [{name: float(scores[name][i]) for name in names} for i in range(len(reward_inputs))]
