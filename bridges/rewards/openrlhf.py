"""OpenRLHF custom reward function: ``--remote_rm_url /path/to/bridges/rewards/openrlhf.py
--label_key answer`` (newer releases: ``--reward.remote_url``, ``--data.label_key``).

OpenRLHF calls ``reward_func(queries, prompts, labels)``: ``queries`` are prompt + response
decoded with the special tokens, ``prompts`` the templated prompts, ``labels`` the
``label_key`` column. It reads ``rewards`` (advantages), ``scores`` (dynamic filtering) and
logs ``extra_logs``, all tensors of one value per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridges.rewards.core import COMPONENTS, score_responses

ASSISTANT_TURN = "<|im_start|>assistant\n"
END_TOKENS = ("<|im_end|>", "<|endoftext|>")


def response_of(query: str, prompt: str) -> str:
    """The response part of a query: what follows the prompt (or the last assistant turn
    opening, where the decoded prompt differs from the given one), without end tokens.

    >>> response_of("<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n<answer>1</answer><|im_end|>", "x")
    '<answer>1</answer>'
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be the templated prompt string, got {type(prompt).__name__}")
    if query.startswith(prompt):
        response = query[len(prompt):]
    elif ASSISTANT_TURN in query:
        response = query[query.rindex(ASSISTANT_TURN) + len(ASSISTANT_TURN):]
    else:
        raise ValueError(f"cannot find the response in query {query[:80]!r}...: it neither starts with its "
                         f"prompt nor has an assistant turn ({ASSISTANT_TURN!r})")
    return strip_end_tokens(response)


def strip_end_tokens(response: str) -> str:
    """``response`` without any run of trailing end tokens, in one backward pass: the end
    moves left token by token and the string is cut once (cutting per token copied the
    rest each time, quadratic in a run of a million tokens).

    >>> strip_end_tokens("<answer>1</answer><|im_end|><|endoftext|><|im_end|>")
    '<answer>1</answer>'
    """
    end = len(response)
    while True:
        for token in END_TOKENS:
            if response.endswith(token, 0, end):  # compares len(token) characters, copies nothing
                end -= len(token)
                break
        else:
            return response[:end]


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str], **overrides: Any) -> dict:
    """``{"rewards", "scores", "extra_logs": {component: ...}}`` as float32 torch tensors."""
    import torch

    responses = [response_of(q, p) if isinstance(q, str) else q for q, p in zip(queries, prompts, strict=True)]
    # A query that is no text reaches score_responses as it is: the game's penalty, with a warning.
    scores = score_responses(list(labels), responses, **overrides)
    overall = torch.tensor(scores["overall"])
    return {
        "rewards": overall,
        "scores": overall.clone(),
        "extra_logs": {name: torch.tensor(scores[name]) for name in COMPONENTS},
    }
