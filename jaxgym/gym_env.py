"""One jaxgym game as a single ``gymnasium.Env`` that plays with a model's text answers
(for harnesses that drive one env: BALROG, lmgame-bench). Needs ``pip install gymnasium``.

    import gymnasium, jaxgym, renderers            # jaxgym registers the ids, renderers the pictures
    env = gymnasium.make("jaxgym/shisensho-v0", render_mode="rgb_array", max_steps=100)
    obs, info = env.reset(seed=0)                  # obs["image"], obs["perception"], obs["legal_action_mask"]
    obs, reward, terminated, truncated, info = env.step("<answer>(0, 1) (2, 1)</answer>")

Every registered game is ``jaxgym/<game id>`` (``jaxgym/2048-v0``, ``jaxgym/swap-v0``, ...);
keyword arguments of ``gymnasium.make`` other than ``render_mode`` and ``max_steps`` are game
parameters (``size=6``). The action is the model's whole response: the game's parser
(``env.parse_answer``) reads its last ``<answer>`` block, and a response it cannot read is
the game's penalised invalid move (``info["parsed"]`` is False). The reward is the game's
raw reward. For vectorised training use ``jaxgym.make_vec`` instead.
"""

from __future__ import annotations

import string
from typing import Any

import gymnasium
import jax
import numpy as np
from gymnasium import spaces

from jaxgym.core import INVALID_ACTION, Env
from jaxgym.registry import make, registered_games
from jaxgym.wrappers import TimeLimit

NAMESPACE = "jaxgym"
TEXT_CHARSET = string.printable
MAX_TEXT = 1 << 16
"""Longest perception text or answer the Text spaces admit (characters)."""


class JaxgymEnv(gymnasium.Env):
    """A jaxgym game behind gymnasium's single-env API (see module doc).

    Args:
        game: a registered game id or an ``Env``.
        render_mode: ``"rgb_array"`` (``render()`` returns the board image) or None.
        max_steps: optional time limit (sets ``truncated``).
        **params: game parameters for ``jaxgym.make``.

    Observation ``Dict``: ``image`` uint8 ``(H, W, 3)``, ``perception`` the exact board text
    (``env.describe``), ``legal_action_mask`` int8 ``(num_actions,)``. Info: ``action`` (the
    parsed flat action, ``INVALID_ACTION`` if none), ``parsed``, ``legal`` (whether it was a
    legal move), ``score``, ``step_count``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, game: str | Env, render_mode: str | None = None, max_steps: int | None = None,
                 **params: Any):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; allowed: 'rgb_array' or None")
        env = game if isinstance(game, Env) else make(game, **params)
        self.game = env if max_steps is None else TimeLimit(env, max_steps)
        self.render_mode = render_mode
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, env.image_shape, np.uint8),
            "perception": spaces.Text(MAX_TEXT, min_length=0, charset=TEXT_CHARSET),
            "legal_action_mask": spaces.MultiBinary(env.num_actions),
        })
        self.action_space = spaces.Text(MAX_TEXT, min_length=0, charset=TEXT_CHARSET)
        self._reset = jax.jit(self.game.reset)
        self._step = jax.jit(self.game.step)
        self._render = jax.jit(self.game.render)
        self._state = None
        self._key = None

    def _observation(self) -> dict[str, Any]:
        state = jax.device_get(self._state)
        return {
            "image": np.asarray(self._render(self._state)),
            "perception": self.game.describe(state),
            "legal_action_mask": np.asarray(state.legal_action_mask, np.int8),
        }

    def _info(self, **extra: Any) -> dict[str, Any]:
        return {"score": int(self._state.score), "step_count": int(self._state.step_count), **extra}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        # The JAX key comes from gymnasium's seeded np_random, so reset(seed=s) replays exactly.
        self._key = jax.random.key(int(self.np_random.integers(0, 2**31 - 1)))
        self._key, key = jax.random.split(self._key)
        self._state = self._reset(key)
        return self._observation(), self._info()

    def step(self, action: str) -> tuple[dict[str, Any], float, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not isinstance(action, str):
            raise ValueError(f"the action is the model's answer text (a str), got {type(action).__name__}: "
                             f"{action!r}; for integer actions use jaxgym.make_vec or the functional API")
        parsed = self.game.parse_answer(action)
        flat = INVALID_ACTION if isinstance(parsed, str) else int(parsed)
        self._key, key = jax.random.split(self._key)
        self._state = self._step(self._state, flat, key)
        state = self._state
        info = self._info(action=flat, parsed=not isinstance(parsed, str), legal=bool(state.last_action_legal))
        return self._observation(), float(state.reward), bool(state.terminated), bool(state.truncated), info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        return np.asarray(self._render(self._state))


def register_envs() -> list[str]:
    """Register ``jaxgym/<id>`` with gymnasium for every registered jaxgym game not yet
    registered (``import jaxgym`` does it; call again after ``jaxgym.register``). Returns the
    gymnasium ids."""
    ids = []
    for game_id in registered_games():
        env_id = f"{NAMESPACE}/{game_id}"
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=f"{__name__}:JaxgymEnv", kwargs={"game": game_id})
        ids.append(env_id)
    return ids
