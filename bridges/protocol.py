"""The paper's per-game training and evaluation protocol, keyed by ``env.name``.

Everything game-specific that the bridges need lives here and nowhere else: how the paper
sampled training states, how it weighted the reward components, how it scored an
evaluation run, and what a random policy may type as an answer. A game without an entry
gets :data:`GENERIC`, which works for any ``jaxgym.Env``.

>>> import jaxgym
>>> p = protocol_for(jaxgym.make("2048"))
>>> p.sample_depth, p.sample_policy, p.eval_warmup, p.w_perception, p.shaping, p.eval_score
(100, 'uniform', 100, 1.0, 'sign', 'raw')
>>> protocol_for(jaxgym.make("2048")).replace(w_perception=0.5).w_perception
0.5

Evaluation presets (:func:`eval_preset`): ``"paper"`` (10 runs of 100 steps, the game's
warm-up) and ``"lmgame"`` (lmgame-bench's settings for 2048 and Candy Crush / Swap).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import jax.numpy as jnp

from jaxgym.core import Array, Env

SAMPLE_POLICIES = ("uniform", "legal")
SHAPINGS = ("sign", "raw", "legal")
EVAL_SCORES = ("raw", "success")

Shaping = Union[str, Callable[[Array, Array], Array]]  # noqa: UP007 (a runtime alias on Python 3.10)


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
    """

    sample_depth: int
    sample_policy: str
    eval_warmup: int
    w_format: float
    w_perception: float
    shaping: Shaping
    w_game: float = 1.0
    eval_score: str = "raw"
    random_answer: Callable[[Env, Any, int], list[str]] | None = None

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
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}={value!r} must be a number")

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


def random_cell_pairs(env: Env, rng: Any, n: int) -> list[str]:
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

_PAPER: dict[str, GameProtocol] = {
    "2048": GameProtocol(
        sample_depth=100, sample_policy="uniform", eval_warmup=100, w_format=1.0, w_perception=1.0,
        shaping="sign", eval_score="raw",
    ),
    "shisensho": GameProtocol(
        sample_depth=250, sample_policy="uniform", eval_warmup=0, w_format=1.0, w_perception=0.0,
        shaping="sign", eval_score="success", random_answer=random_cell_pairs,
    ),
    "shisensho-images": GameProtocol(
        sample_depth=250, sample_policy="uniform", eval_warmup=0, w_format=1.0, w_perception=1.0,
        shaping="sign", eval_score="success", random_answer=random_cell_pairs,
    ),
    "swap": GameProtocol(
        sample_depth=0, sample_policy="uniform", eval_warmup=0, w_format=1.0, w_perception=1.0,
        shaping="sign", eval_score="success", random_answer=random_cell_pairs,
    ),
}


def known_games() -> list[str]:
    """Names of the games with a paper protocol (others get :data:`GENERIC`)."""
    return sorted(_PAPER)


def protocol_for(env: Env | str) -> GameProtocol:
    """The paper's protocol for ``env`` (an ``Env`` or a bare game name), else :data:`GENERIC`."""
    name = env if isinstance(env, str) else env.name
    return _PAPER.get(name, GENERIC)


# -- evaluation presets ---------------------------------------------------------------------


@dataclass(frozen=True)
class EvalPreset:
    """One game's evaluation setting under a named protocol: ``runs`` runs of ``steps`` steps
    after ``warmup`` random actions (None: the game's ``eval_warmup``), on
    ``jaxgym.make(game, **params)``."""

    runs: int
    steps: int
    warmup: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


EVAL_PROTOCOLS: dict[str, dict[str, EvalPreset] | EvalPreset] = {
    # The paper's avg@10: 10 runs of 100 steps after the game's warm-up, default boards.
    "paper": EvalPreset(runs=10, steps=100),
    # lmgame-bench (github.com/lmgame-org/GamingAgent @ 996d848):
    #   gamingagent/configs/custom_01_2048/config.yaml: max_steps 1000, num_runs 3, on
    #   gymnasium_2048's 4x4 board (gamingagent/envs/custom_01_2048/game_env_config.json),
    #   from a fresh board;
    #   gamingagent/configs/custom_03_candy_crush/config.yaml: max_steps 50, num_runs 3, and
    #   gamingagent/envs/custom_03_candy_crush/game_env_config.json: num_rows 8, num_cols 8,
    #   num_colours 4, num_moves 50, no specials -> Swap 8x8 with 4 colours of one shape.
    "lmgame": {
        "2048": EvalPreset(runs=3, steps=1000, warmup=0, params={"size": 4}),
        "swap": EvalPreset(runs=3, steps=50, warmup=0, params={"size": 8, "colors": 4, "shapes": 1, "max_moves": 50}),
    },
}
"""Named evaluation protocols: one preset for every game, or a preset per game name."""


def eval_preset(protocol: str, game: str) -> EvalPreset:
    """The evaluation preset of ``game`` (a bare or versioned id) under ``protocol``.

    >>> eval_preset("lmgame", "swap").params["colors"], eval_preset("lmgame", "2048-v0").steps
    (4, 1000)
    >>> eval_preset("paper", "shisensho").runs
    10
    """
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is unknown; allowed: {sorted(EVAL_PROTOCOLS)}")
    presets = EVAL_PROTOCOLS[protocol]
    if isinstance(presets, EvalPreset):
        return presets
    name, sep, version = game.rpartition("-v")
    name = name if sep and version.isdigit() else game
    if name not in presets:
        raise ValueError(f"protocol {protocol!r} has no setting for game {game!r}; it covers {sorted(presets)}")
    return presets[name]


def parse_game_params(items: Sequence[str]) -> dict[str, Any]:
    """Game parameters from command-line ``--param name=value`` items; each value is JSON where
    it parses (``size=6`` -> 6), else the string (``dataset=patterns``).

    >>> parse_game_params(["size=6", "dataset=patterns"])
    {'size': 6, 'dataset': 'patterns'}
    """
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--param {item!r} must look like name=value, e.g. --param size=6")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params
