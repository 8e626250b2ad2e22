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
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from bridges.export import load_state, parse_ground_truth
from bridges.safe_json import MAX_DEPTH, json_depth
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


def response_text(index: int, response: Any) -> str:
    """The text of response ``index``; one that is no text (None, bytes, a number) gets the
    game's defined penalty, scored as an unparseable answer, with a warning naming the row:
    one odd completion should not end a training run, and it must not pass unnoticed."""
    try:
        return completion_text(response)
    except ValueError:
        warnings.warn(f"response {index} is a {type(response).__name__}, not text or chat messages; scored as "
                      f"an unparseable answer (the game's invalid-move penalty)", RuntimeWarning, stacklevel=3)
        return ""


def truth_key(index: int, truth: Any) -> str:
    """A ground truth as the string that groups responses to it (a dict is dumped once its
    depth is checked: ``json.dumps`` recurses, as ``json.loads`` does)."""
    if isinstance(truth, str):
        return truth
    if isinstance(truth, (dict, list)) and json_depth(truth) > MAX_DEPTH:
        raise ValueError(f"ground truth of response {index} is nested deeper than {MAX_DEPTH} levels; "
                         f"pass the 'answer' column of a bridges.export dataset")
    try:
        return json.dumps(truth, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"ground truth of response {index} is not JSON ({error}); pass the 'answer' column "
                         f"of a bridges.export dataset") from None


def score_responses(ground_truths: Sequence[Any], responses: Sequence[Any], **overrides: Any) -> dict[str, np.ndarray]:
    """Reward components of ``responses[i]`` against ``ground_truths[i]`` (see module doc).

    A malformed ground truth raises ``ValueError`` naming its response index (the dataset is
    wrong: scoring on would train on noise); a response that is no text is scored as
    unparseable with a warning (:func:`response_text`). Returns ``{name: (N,) array}`` for the
    names in :data:`FIELDS` (float32; ``parsed`` and ``legal`` bool)."""
    if len(ground_truths) != len(responses):
        raise ValueError(f"got {len(ground_truths)} ground truths for {len(responses)} responses; "
                         f"pass one ground truth per response")
    groups: dict[str, list[int]] = {}
    for i, truth in enumerate(ground_truths):
        groups.setdefault(truth_key(i, truth), []).append(i)
    out = {name: np.zeros(len(responses), bool if name in ("parsed", "legal") else np.float32) for name in FIELDS}
    for text, rows in groups.items():
        try:
            truth = parse_ground_truth(text)
            _, state = load_state(truth)
        except ValueError as error:
            raise ValueError(f"ground truth of response {rows[0]} (shared by {len(rows)} responses): {error}") from None
        scores = scorer_for(truth, **overrides).score(
            jax.tree.map(lambda x: x[None], state), [[response_text(i, responses[i]) for i in rows]],
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
        texts = tuple(response_text(i, r) for i, r in enumerate(responses))
        truths = tuple(truth_key(i, g) for i, g in enumerate(ground_truths))
        key = (truths, texts, json.dumps(overrides, sort_keys=True))
        if key != self._key:
            self._value = score_responses(list(key[0]), list(texts), **overrides)
            self._key = key
        return self._value
