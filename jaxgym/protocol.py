"""A game's training and evaluation protocol, declared by the game itself.

Each game class sets ``protocol`` to a :class:`GameProtocol`: how the paper (or, for a new
game, its author) samples training states, weights and shapes the reward components, scores
an evaluation run, and what a random policy may type as an answer. ``jaxgym.register``
records it with the game, and the bridges read it from there
(``bridges.protocol.protocol_for``), so adding a game never edits the bridges. A game
without one gets :data:`GENERIC`, which works for any ``jaxgym.Env``.

This module is plain data and elementwise JAX: it imports nothing above the game layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import jax.numpy as jnp

from jaxgym.core import Array

SAMPLE_POLICIES = ("uniform", "legal")
SHAPINGS = ("sign", "raw", "legal")
EVAL_SCORES = ("raw", "success")

Shaping = Union[str, Callable[[Array, Array], Array]]  # noqa: UP007 (a runtime alias on Python 3.10)


@dataclass(frozen=True)
class EvalPreset:
    """One game's evaluation setting under a named protocol: ``runs`` runs of ``steps`` steps
    after ``warmup`` random actions (None: the game's ``eval_warmup``), on
    ``jaxgym.make(game, **params)``."""

    runs: int
    steps: int
    warmup: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class GameProtocol:
    """How the paper sampled states, shaped rewards and scored evaluations for one game.

    Attributes:
        sample_depth: random actions taken after reset when sampling training states
            (2048: 100, Shisen-Sho: 250, Swap: 0, i.e. fresh boards).
        sample_policy: ``"uniform"`` (uniform over all ``env.num_actions`` flat actions, most
            of them illegal no-ops in the tile games, as the paper did) or ``"legal"``
            (uniform over the legal actions).
        eval_warmup: random actions (``sample_policy``) before an evaluation run starts
            (2048: 100, the others 0).
        w_format: weight of the format component (1 if all three tag pairs are present).
        w_perception: weight of the perception component (1 if the ``<perception>`` block
            equals ``env.describe(state)`` after trimming surrounding whitespace).
        shaping: how the env's raw reward becomes the ``game`` component: ``"sign"`` (+1 if
            the raw reward is > 0, else -1: the paper's), ``"raw"`` (the raw reward),
            ``"legal"`` (+1 if the action was a legal move, else -1), or a traceable callable
            ``(raw_reward, legal) -> game`` on float32/bool arrays.
        w_game: weight of the ``game`` component in ``overall`` (1 in the paper).
        eval_score: what an evaluation run sums per step: ``"raw"`` (the raw reward: 2048's
            merge score) or ``"success"`` (1 for every step with a raw reward > 0: matches in
            Shisen-Sho, swaps in Swap).
        random_answer: what the ``random`` evaluation policy types, as a function
            ``(env, numpy Generator, n) -> n answer strings``. ``None`` means a uniformly
            random flat action written with ``env.format_answer``, which for 2048 is a
            direction 0..3 and for games whose flat actions encode every cell pair is two
            uniformly random cells of the board.
        eval_presets: the game's settings under named evaluation protocols of other
            benchmarks, ``((protocol name, EvalPreset), ...)`` (2048 and Swap: ``"lmgame"``,
            lmgame-bench's); ``bridges.protocol.eval_preset`` reads them.
    """

    sample_depth: int
    sample_policy: str
    eval_warmup: int
    w_format: float
    w_perception: float
    shaping: Shaping
    w_game: float = 1.0
    eval_score: str = "raw"
    random_answer: Callable[[Any, Any, int], list[str]] | None = None
    eval_presets: tuple[tuple[str, EvalPreset], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.sample_depth, int) or self.sample_depth < 0:
            raise ValueError(f"sample_depth={self.sample_depth!r} is out of range; allowed: an int >= 0")
        if not isinstance(self.eval_warmup, int) or self.eval_warmup < 0:
            raise ValueError(f"eval_warmup={self.eval_warmup!r} is out of range; allowed: an int >= 0")
        if self.sample_policy not in SAMPLE_POLICIES:
            raise ValueError(f"sample_policy={self.sample_policy!r} is not one of {SAMPLE_POLICIES}")
        if not callable(self.shaping) and self.shaping not in SHAPINGS:
            raise ValueError(f"shaping={self.shaping!r} is not one of {SHAPINGS} or a callable (raw, legal) -> game")
        if self.eval_score not in EVAL_SCORES:
            raise ValueError(f"eval_score={self.eval_score!r} is not one of {EVAL_SCORES}")
        for name in ("w_format", "w_perception", "w_game"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}={value!r} must be a finite number (a NaN or infinite weight makes every "
                                 f"reward NaN or infinite)")

    def replace(self, **changes: Any) -> GameProtocol:
        """A copy with some fields changed; unknown field names raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown protocol field(s) {unknown}; allowed: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def shape_reward(self, raw_reward: Array, legal: Array) -> Array:
        """The ``game`` component (float32) of raw rewards; traceable, elementwise."""
        return shape_reward(self.shaping, raw_reward, legal)

    def eval_points(self, raw_reward: Array) -> Array:
        """What one evaluation step adds to a run's score (numpy or JAX, elementwise)."""
        if self.eval_score == "success":
            return (raw_reward > 0).astype("float32")
        return raw_reward


def shape_reward(shaping: Any, raw_reward: Array, legal: Array) -> Array:
    """The ``game`` reward component (float32) of raw rewards under ``shaping`` (a
    ``GameProtocol.shaping``: ``"sign"``, ``"legal"``, ``"raw"`` or a callable); traceable,
    elementwise."""
    raw_reward = jnp.asarray(raw_reward, jnp.float32)
    legal = jnp.asarray(legal, bool)
    if callable(shaping):
        return jnp.asarray(shaping(raw_reward, legal), jnp.float32)
    if shaping == "sign":
        return jnp.where(raw_reward > 0, 1.0, -1.0).astype(jnp.float32)
    if shaping == "legal":
        return jnp.where(legal, 1.0, -1.0).astype(jnp.float32)
    return raw_reward


def random_cell_pairs(env: Any, rng: Any, n: int) -> list[str]:
    """``n`` answers naming two uniformly random cells of the ``env.size x env.size`` board,
    as a person picking cells at random would type them (for Swap most are not adjacent:
    invalid moves).

    >>> import numpy as np, jaxgym
    >>> random_cell_pairs(jaxgym.make("swap"), np.random.default_rng(0), 2)
    ['<answer>(6, 5) (4, 2)</answer>', '<answer>(2, 0) (0, 0)</answer>']
    """
    cells = rng.integers(0, env.size, (n, 4))
    return [f"<answer>({r1}, {c1}) ({r2}, {c2})</answer>" for r1, c1, r2, c2 in cells.tolist()]


GENERIC = GameProtocol(
    sample_depth=0,
    sample_policy="legal",
    eval_warmup=0,
    w_format=1.0,
    w_perception=1.0,
    shaping="sign",
    eval_score="raw",
)
"""The fallback for games the paper did not have: fresh boards, the paper's weights and
sign shaping, and the raw reward summed in evaluation."""
