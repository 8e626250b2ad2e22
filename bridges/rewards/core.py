"""The one scoring core behind every trainer adapter.

    scores = score_responses(ground_truths, responses)   # dict of (N,) float32 arrays
    scores["overall"], scores["game"], scores["format"], scores["perception"]

``ground_truths[i]`` is an export's ``answer`` column (``bridges.export.ground_truth``) and
``responses[i]`` the model's text for it. Responses to the same ground truth form one group,
scored with ``GroupScorer.score`` on that state alone, stepped with
``jax.random.key(score_seed)`` (the seed the ground truth carries): the rewards equal
``GroupScorer(env).score(state[None], [group], jax.random.key(score_seed))``, whatever
trainer calls, in whatever order or batch split. Two responses naming the same move get the
same game reward, as in the learner.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from bridges.export import load_state, parse_ground_truth
from bridges.scoring import GroupScorer

COMPONENTS = ("game", "format", "perception")
"""The reward components, in the order of the TRL functions and their weights."""

FIELDS = (*COMPONENTS, "overall", "raw_reward", "parsed", "legal")


@functools.lru_cache(maxsize=64)
def _scorer(game: str, params_json: str, overrides_json: str) -> GroupScorer:
    from bridges.export import env_for

    env = env_for({"game": game, "params": json.loads(params_json)})
    return GroupScorer(env, **json.loads(overrides_json))


def scorer_for(truth: dict[str, Any], **overrides: Any) -> GroupScorer:
    """The ``GroupScorer`` for a ground truth's game (cached per game, parameters and overrides).
    ``overrides`` are ``GameProtocol`` fields (``w_format``, ``w_perception``, ``w_game``, ``shaping``)."""
    return _scorer(truth["game"], json.dumps(truth.get("params", {}), sort_keys=True),
                   json.dumps(overrides, sort_keys=True))


def weights(ground_truth: str | dict[str, Any], **overrides: Any) -> list[float]:
    """``[w_game, w_format, w_perception]`` of a ground truth's game protocol (TRL's ``reward_weights``)."""
    p = scorer_for(parse_ground_truth(ground_truth), **overrides).protocol
    return [float(p.w_game), float(p.w_format), float(p.w_perception)]


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or chat messages (TRL's conversational
    completions, ``[{"role": "assistant", "content": ...}]``) whose assistant contents, plain or
    as ``{"type": "text"}`` parts, are joined.

    >>> completion_text([{"role": "assistant", "content": "<answer>1</answer>"}])
    '<answer>1</answer>'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        raise ValueError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")
    parts = []
    for message in completion:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "".join(parts)


def score_responses(ground_truths: Sequence[Any], responses: Sequence[Any], **overrides: Any) -> dict[str, np.ndarray]:
    """Reward components of ``responses[i]`` against ``ground_truths[i]`` (see module doc).

    Returns ``{name: (N,) array}`` for the names in :data:`FIELDS` (float32; ``parsed`` and
    ``legal`` bool)."""
    if len(ground_truths) != len(responses):
        raise ValueError(f"got {len(ground_truths)} ground truths for {len(responses)} responses; "
                         f"pass one ground truth per response")
    groups: dict[str, list[int]] = {}
    for i, truth in enumerate(ground_truths):
        key = truth if isinstance(truth, str) else json.dumps(truth, sort_keys=True)
        groups.setdefault(key, []).append(i)
    out = {name: np.zeros(len(responses), bool if name in ("parsed", "legal") else np.float32) for name in FIELDS}
    for text, rows in groups.items():
        truth = parse_ground_truth(text)
        _, state = load_state(truth)
        scores = scorer_for(truth, **overrides).score(
            jax.tree.map(lambda x: x[None], state), [[completion_text(responses[i]) for i in rows]],
            jax.random.key(int(truth["score_seed"])),
        )
        for name in FIELDS:
            out[name][rows] = np.asarray(getattr(scores, name))[0]
    return out


class CachedScorer:
    """``score_responses`` remembering its last batch: TRL calls one function per component
    with the same completions, and the batch is scored once for all of them."""

    def __init__(self) -> None:
        self._key: Any = None
        self._value: dict[str, np.ndarray] | None = None

    def __call__(self, ground_truths: Sequence[Any], responses: Sequence[Any],
                 **overrides: Any) -> dict[str, np.ndarray]:
        texts = tuple(completion_text(r) for r in responses)
        key = (tuple(g if isinstance(g, str) else json.dumps(g, sort_keys=True) for g in ground_truths), texts,
               json.dumps(overrides, sort_keys=True))
        if key != self._key:
            self._value = score_responses(list(key[0]), list(texts), **overrides)
            self._key = key
        return self._value
