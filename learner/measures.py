"""The paper's measures of a batch of scored responses, for logs and evaluations.

- ``P_acc``: the share of responses whose perception block is exactly the board
  (the scorer's ``perception`` component);
- ``R_acc``: the share of responses that earn a positive raw game reward among those whose
  perception is exact, ``P(raw reward > 0 | perception exact)``; absent (NaN) when no
  response perceived the board exactly;
- ``cell_accuracy``: the share of board cells the perception block names correctly, cell by
  cell in row order (a missing row or cell counts as wrong, extra ones are ignored);
- ``format``, ``legal`` (a parsed action that is a legal move), ``game`` (the shaped game
  reward) and ``positive`` (the share with a raw reward > 0);
- ``reasoning`` (with ``env``): the share of responses whose ``<think>`` line is true of the
  board, i.e. is the line a cold-start target writes for the response's own action
  (``bridges.teachers.reasoning_line``: 2048, that move's merge score; the pair games, what
  its two cells hold). A student that copies its teacher's format without computing anything
  from the board scores about what guessing scores here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bridges.teachers import board_cells, reasoning_line
from jaxgym import parsing

MEASURES = ("P_acc", "R_acc", "cell_accuracy", "format", "legal", "game", "positive", "reasoning")


def cell_accuracy(response: str, truth: str) -> float:
    """Share of the cells of ``truth`` that the response's last perception block names
    correctly (0 without a block).

    >>> cell_accuracy("<perception> 2 | - \\n 4 | 4 </perception>", " 2 | - \\n - | 4 ")
    0.75
    """
    block = parsing.last_tag_content(response, "perception")
    expected = board_cells(truth)
    total = sum(len(row) for row in expected)
    if block is None or total == 0:
        return 0.0
    got = board_cells(block)
    right = sum(
        1
        for r, row in enumerate(expected)
        for c, cell in enumerate(row)
        if r < len(got) and c < len(got[r]) and got[r][c] == cell
    )
    return right / total


def reasoning_is_true(env: Any, response: str, truth: str, action: int, raw_reward: float) -> bool:
    """Whether the response's last ``<think>`` line is the one a cold-start target writes for
    ``action`` (the response's parsed action, -1 if none) on the board ``truth`` describes.

    >>> import jaxgym
    >>> reasoning_is_true(jaxgym.make("2048"), "<think>Moving left merges for 4 points.</think>", " 2 | 2 ", 3, 4.0)
    True
    >>> reasoning_is_true(jaxgym.make("2048"), "<think>Moving left merges for 8 points.</think>", " 2 | 2 ", 3, 4.0)
    False
    """
    think = parsing.last_tag_content(response, "think")
    if think is None or not 0 <= action < env.num_actions:  # no answer, or a number that is no move
        return False
    return think.strip() == reasoning_line(env, truth, action, raw_reward)


def paper_measures(scores: Any, responses: Sequence[Sequence[str]], truths: Sequence[str],
                   env: Any = None) -> dict[str, float]:
    """The measures (see module doc) of ``B x n`` scored responses.

    Args:
        scores: ``bridges.scoring.GroupScores`` of the responses (``(B, n)`` arrays).
        responses: ``B`` lists of ``n`` response strings.
        truths: ``B`` ground-truth perception texts (``env.describe`` of each state).
        env: the game; with it, ``reasoning`` too.
    """
    exact = np.asarray(scores.perception, dtype=bool)
    positive = np.asarray(scores.raw_reward) > 0
    legal = np.asarray(scores.legal, dtype=bool) & np.asarray(scores.parsed, dtype=bool)
    cells = [cell_accuracy(text, truths[b]) for b, group in enumerate(responses) for text in group]
    measured = {
        "P_acc": float(exact.mean()),
        "R_acc": float(positive[exact].mean()) if exact.any() else math.nan,
        "cell_accuracy": float(np.mean(cells)),
        "format": float(np.mean(scores.format)),
        "legal": float(legal.mean()),
        "game": float(np.mean(scores.game)),
        "positive": float(positive.mean()),
    }
    if env is not None:
        actions, raw = np.asarray(scores.actions), np.asarray(scores.raw_reward)
        measured["reasoning"] = float(np.mean([
            reasoning_is_true(env, text, truths[b], int(actions[b, i]), float(raw[b, i]))
            for b, group in enumerate(responses) for i, text in enumerate(group)
        ]))
    return measured
